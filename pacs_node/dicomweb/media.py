"""Content negotiation (PS3.18 8.7): the media ranges a request accepts, and the media types of stored encodings.

The ``Accept`` header (or the ``accept`` query parameter, PS3.18 8.3.3.1, which overrides it) is read into
:class:`MediaRange` items in order of preference (``q`` first, then as written). A resource walks them and
takes the first it can satisfy; when none can be, it answers 406 naming what it can give (:func:`not_acceptable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import request

from telerad.problems import Problem

#: Explicit VR Little Endian: the native encoding of uncompressed frames and bulk data (PS3.18 8.7.3).
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
#: The media type of frames in each encapsulated (compressed) transfer syntax (PS3.18 8.7.3).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}

_TOKEN = re.compile(r'\s*([^\s;,="]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?\s*')


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header: ``type/subtype`` (maybe with ``*``) and its parameters."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def part_type(self) -> str:
        """For ``multipart/related``, the media type of its parts (``type`` parameter; ``*/*`` when absent)."""
        return self.params.get("type", "*/*").lower()

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter, if given."""
        return self.params.get("transfer-syntax")

    def is_multipart(self) -> bool:
        """Whether this range is ``multipart/related`` (or a wildcard covering it)."""
        return covers(self.media_type, "multipart/related")


def covers(pattern: str, media_type: str) -> bool:
    """Whether the media range ``pattern`` (``*/*``, ``image/*`` or exact) includes ``media_type``."""
    kind, _, sub = pattern.lower().partition("/")
    wanted_kind, _, wanted_sub = media_type.lower().partition("/")
    return kind == "*" or (kind == wanted_kind and sub in ("*", wanted_sub))


def accepted() -> list[MediaRange]:
    """The request's acceptable media ranges, most preferred first; 400 if they cannot be read."""
    raw = request.args.get("accept") or request.headers.get("Accept") or "*/*"
    ranges: list[tuple[float, MediaRange]] = []
    for item in _split(raw):
        media_type, _, rest = item.partition(";")
        media_type = media_type.strip().lower()
        if not re.fullmatch(r"[\w.+*-]+/[\w.+*-]+", media_type):
            raise Problem(400, f"accept: cannot read the media range {item.strip()!r}", parameter="accept")
        params = _parameters(rest, item)
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            raise Problem(400, f"accept: bad q value in {item.strip()!r}", parameter="accept") from None
        if quality > 0:
            ranges.append((quality, MediaRange(media_type, params)))
    ranges.sort(key=lambda pair: -pair[0])  # stable: equal preferences stay in the order written
    return [media_range for _, media_range in ranges]


def _split(header: str) -> list[str]:
    """The comma-separated items of a header value, commas inside quoted strings kept."""
    items, current, quoted = [], [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item for item in items if item.strip()]


def _parameters(text: str, item: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for piece in text.split(";"):
        if not piece.strip():
            continue
        match = _TOKEN.fullmatch(piece)
        if match is None or match.group(2) is None:
            raise Problem(400, f"accept: cannot read the parameter {piece.strip()!r} of {item.strip()!r}",
                          parameter="accept")
        params[match.group(1).lower()] = match.group(2).strip('"')
    return params


def not_acceptable(resource: str, supported: list[str]) -> Problem:
    """406 problem details listing the media types ``resource`` can be given in."""
    return Problem(406, f"{resource} can be given as: {'; or '.join(supported)}", supported=supported)


def frame_media_type(transfer_syntax: str) -> str:
    """The media type of a frame in ``transfer_syntax`` (``application/octet-stream`` for native data)."""
    return FRAME_MEDIA_TYPES.get(transfer_syntax, "application/octet-stream")


DICOM_JSON = "application/dicom+json"


def require_dicom_json(resource: str) -> None:
    """406 unless the request accepts DICOM JSON (``application/dicom+json``, or plain ``application/json``)."""
    if not any(covers(item.media_type, DICOM_JSON) or covers(item.media_type, "application/json")
               for item in accepted()):
        raise not_acceptable(resource, [DICOM_JSON])
