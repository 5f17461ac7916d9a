"""The storage area: DICOM files on local disk, addressed by the SHA-256 of their bytes.

The index (``index.py``) says what a file is; this module only keeps bytes
safe. A file is written to a temporary name, flushed with ``fsync``, renamed
into place and its folder flushed, so once :meth:`FileStorage.put` returns the
bytes survive a crash or a power cut. Identical bytes are stored once.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredObject:
    """Where bytes were stored and what they hash to."""

    key: str
    sha256: str
    size: int


class FileStorage:
    """Content-addressed files under ``root``: ``objects/ab/<sha256>.dcm``.

    The 256 bucket folders are made (and flushed) once, up front, so storing a
    file never has to create and flush a folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        objects = root / "objects"
        _make_folders(objects)
        missing = [f"{bucket:02x}" for bucket in range(256) if not (objects / f"{bucket:02x}").is_dir()]
        for name in missing:
            (objects / name).mkdir(exist_ok=True)
        if missing:
            _fsync_folder(objects)

    def path(self, key: str) -> Path:
        """The file holding ``key``."""
        return self.root / key

    def read(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return self.path(key).is_file()

    def put(self, data: bytes, sha256: str | None = None) -> StoredObject:
        """Store ``data`` durably and return its key; raises ``OSError`` if the disk fails."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        key = f"objects/{digest[:2]}/{digest}.dcm"
        final = self.path(key)
        if final.is_file() and final.stat().st_size == len(data):
            return StoredObject(key, digest, len(data))
        _make_folders(final.parent)
        temporary = final.parent / f".incoming-{uuid.uuid4().hex}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(final.parent)
        return StoredObject(key, digest, len(data))


def _make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, flushing each new entry to disk."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            continue
        _fsync_folder(new.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
