"""Frames of a stored instance's Pixel Data (PS3.18 10.4.3.3.6 and 8.7.3): as stored, or native.

*As stored*: the encapsulated frame (its fragments joined) of a compressed transfer syntax, byte for byte.
*Native*: uncompressed pixels in Explicit VR Little Endian order, sliced straight from the file for native
little-endian data, otherwise decoded with pydicom's pixel handlers (pylibjpeg, openjpeg, RLE) — as
pydicom gives them, so colour JPEG arrives as RGB and planes interleaved.
Only the frames asked for are read: the Pixel Data value is left in the file and sought into.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.pixels import pack_bits, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacs_node.dicomweb.dicom_json import INLINE_LIMIT, PIXEL_DATA


class NoFrames(LookupError):
    """The instance has no Pixel Data."""


class PixelFrames:
    """The frames of one stored instance, counted from 1 as PS3.18 numbers them."""

    def __init__(self, path: Path, transfer_syntax: str) -> None:
        self.path = path
        self.transfer_syntax = UID(transfer_syntax)
        # A deflated data set cannot be sought into: it is inflated whole.
        deferred = self.transfer_syntax != DeflatedExplicitVRLittleEndian
        self.ds = dcmread(path, defer_size=INLINE_LIMIT if deferred else None)
        if PIXEL_DATA not in self.ds:
            raise NoFrames(f"{path.name} has no Pixel Data")
        self.count = frame_count(self.ds)

    @property
    def compressed(self) -> bool:
        """Whether the frames are stored encapsulated (a compressed transfer syntax)."""
        return self.transfer_syntax.is_encapsulated

    def stored(self, numbers: list[int]) -> Iterator[bytes]:
        """Encapsulated frames exactly as stored (their fragments joined)."""
        raw = self.ds.get_item(PIXEL_DATA, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.value is not None:
            for number in numbers:
                yield get_frame(self.ds.PixelData, number - 1, number_of_frames=self.count)
            return
        with self.path.open("rb") as file:
            for number in numbers:
                file.seek(raw.value_tell)
                yield get_frame(file, number - 1, number_of_frames=self.count)

    def native(self, numbers: list[int]) -> Iterator[bytes]:
        """Frames as native little-endian pixels (PS3.5 8.1.1)."""
        ds = self.ds
        bits = int(ds.BitsAllocated)
        length = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
        little = self.transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        if little and bits % 8 == 0 and isinstance(raw, RawDataElement) and raw.value is None:
            with self.path.open("rb") as file:
                for number in numbers:
                    file.seek(raw.value_tell + (number - 1) * length)
                    yield file.read(length)
            return
        source = ds if self.transfer_syntax == DeflatedExplicitVRLittleEndian else self.path
        for number in numbers:
            pixels = pixel_array(source, index=number - 1)
            yield pack_bits(pixels) if bits == 1 else _little_endian(pixels)


def frame_count(ds: Dataset) -> int:
    """Number of Frames (1 when absent); raises ``ValueError`` naming a value that is not a count."""
    value = ds.get("NumberOfFrames")
    try:
        count = int(value or 1)
    except (TypeError, ValueError):
        raise ValueError(f"Number of Frames {value!r} is not a number") from None
    if count < 1:
        raise ValueError(f"Number of Frames {count} is not a count of frames")
    return count


def _little_endian(pixels: np.ndarray) -> bytes:
    return pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
