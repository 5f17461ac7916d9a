"""``multipart/related`` messages (RFC 2387) as PS3.18 8.6 uses them: streamed responses, STOW-RS request bodies.

A response is written part by part (:func:`stream`) so a 300-instance study never sits in memory. A request
body is first spooled to a temporary file and its framing checked as a whole (:func:`read_parts`), so a
malformed message is refused before any of its parts is stored.
"""

from __future__ import annotations

import mmap
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO


class MultipartError(ValueError):
    """A request body is not a well-formed multipart message; the message says where and why."""


class Part:
    """One body part of a spooled message: its Content-Type (``None`` when it has none), its bytes on demand."""

    def __init__(self, content_type: str | None, body: mmap.mmap, start: int, end: int) -> None:
        self.content_type = content_type
        self._body, self._start, self._end = body, start, end

    def data(self) -> bytes:
        """The part's content, read from the spool."""
        return self._body[self._start : self._end]


def new_boundary() -> str:
    """A boundary that no part will contain (random, RFC 2046 5.1.1)."""
    return uuid.uuid4().hex


def content_type(part_type: str, boundary: str) -> str:
    """The Content-Type of a ``multipart/related`` message whose parts are ``part_type``."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def stream(parts: Iterable[tuple[dict[str, str], Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """The message of ``(header fields, chunks)`` parts, chunk by chunk."""
    for headers, chunks in parts:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        yield f"--{boundary}\r\n{fields}\r\n".encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def parameters(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header's media type (lower case) and parameters (names lower case, values unquoted)."""
    media_type, _, rest = header.partition(";")
    params = {}
    for match in re.finditer(r'\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', rest):
        params[match.group(1).lower()] = match.group(2).strip().strip('"')
    return media_type.strip().lower(), params


@contextmanager
def read_parts(body: BinaryIO, boundary: str) -> Iterator[list[Part]]:
    """The parts of a multipart body, spooled to a temporary file (valid within the ``with`` block).

    The whole framing is checked before any part is given: raises :class:`MultipartError`.
    """
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(body, spool, 1 << 20)
        if spool.tell() == 0:
            raise MultipartError("the request body is empty")
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield [Part(content_type, view, start, end) for content_type, start, end in _frame(view, boundary)]


def _frame(body: mmap.mmap, boundary: str) -> list[tuple[str | None, int, int]]:
    """Where each part's headers say it is and where its content starts and ends (RFC 2046 5.1.1)."""
    dash = b"--" + boundary.encode("ascii", "replace")
    if body[: len(dash)] == dash:
        position = 0
    else:
        position = body.find(b"\r\n" + dash)
        if position < 0:
            raise MultipartError(f"the body does not contain the boundary {boundary!r} of its Content-Type")
        position += 2
    spans: list[tuple[str | None, int, int]] = []
    while True:
        position += len(dash)
        if body[position : position + 2] == b"--":
            if not spans:
                raise MultipartError("the message has no parts")
            return spans
        number = len(spans) + 1
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError(f"part {number}: the boundary line is not followed by CRLF")
        header_end = line_end if body[line_end : line_end + 4] == b"\r\n\r\n" else body.find(b"\r\n\r\n", line_end)
        if header_end < 0:
            raise MultipartError(f"part {number}: its headers are not ended by an empty line")
        part_type = _content_type(body[line_end + 2 : header_end], number)
        start = header_end + 4
        end = body.find(b"\r\n" + dash, start)
        if end < 0:
            raise MultipartError(f"part {number} is not closed by a boundary: the body is truncated")
        spans.append((part_type, start, end))
        position = end + 2


def _content_type(headers: bytes, number: int) -> str | None:
    """The Content-Type among a part's header lines, if any."""
    found = None
    for line in headers.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError(f"part {number}: malformed header line {line[:60]!r}")
        if name.strip().lower() == "content-type":
            found = value.strip()
    return found
