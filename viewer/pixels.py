"""Pixel decoding and the grayscale/colour transformations of PS3.3 C.11 and C.7.6.3, as numpy operations.

The functions here work on one frame of a parsed :class:`pydicom.Dataset`. Attributes that an enhanced
multi-frame image keeps in its functional groups (PS3.3 C.7.6.16) are looked up per frame first, then in the
shared groups, then at the top level where classic single-frame images keep them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array

GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"})
VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})


class RenderError(ValueError):
    """An instance cannot be decoded or rendered as asked; the message says precisely why."""


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): ``center`` and ``width`` in modality units (HU for CT)."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width > 0):
            raise RenderError(f"a window needs a finite center and a positive width, not {self.center}/{self.width}")


def frame_value(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """``keyword`` for frame ``index``: its per-frame functional group ``sequence``, the shared one, or the top level."""
    for groups, item in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        macro = items[item].get(sequence) if items is not None and item < len(items) else None
        if macro and keyword in macro[0]:
            return macro[0][keyword].value
    return ds.get(keyword)


def first_number(value: Any) -> float | None:
    """The first value of a possibly multi-valued numeric attribute (DS, IS, FD ...), or None if absent or bad."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """Decode frame ``index`` only (PS3.5 8 and A.4); YBR_FULL and YBR_FULL_422 arrive as RGB, as pydicom delivers them."""
    try:
        return pixel_array(ds, index=index)
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds; the caller gets one precise kind
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(syntax, "name", syntax)
        raise RenderError(f"the pixel data of frame {index} ({name}) cannot be decoded: {exc}") from exc


@cache
def lut_domain(dtype: np.dtype) -> np.ndarray:
    """Every value of an 8- or 16-bit integer ``dtype``, in the order of its unsigned bit pattern (a LUT index)."""
    unsigned = np.dtype(f"u{dtype.itemsize}")
    domain = np.arange(2 ** (8 * dtype.itemsize), dtype=unsigned).view(dtype)
    domain.flags.writeable = False
    return domain


def lut_index(frame: np.ndarray) -> np.ndarray:
    """``frame`` viewed as the unsigned indices into a table built over :func:`lut_domain`."""
    return frame.view(np.dtype(f"u{frame.dtype.itemsize}"))


def has_lut_domain(frame: np.ndarray) -> bool:
    """Whether ``frame`` holds 8- or 16-bit integers, for which a full lookup table is cheaper than arithmetic."""
    return frame.dtype.kind in "iu" and frame.dtype.itemsize <= 2


def modality_lut(values: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """PS3.3 C.11.1 Modality LUT (C.7.6.16.2.9 per frame): stored values to modality units, as float32."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(values, ds).astype(np.float32)
    slope = first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    result = values.astype(np.float32)
    if slope is not None and slope != 1:
        result *= np.float32(slope)
    if intercept:
        result += np.float32(intercept)
    return result


def voi_function(ds: Dataset, index: int) -> str:
    """PS3.3 C.11.2.1.3 VOI LUT Function of frame ``index``; LINEAR when absent or not a defined term."""
    function = str(frame_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    return function if function in VOI_FUNCTIONS else "LINEAR"


def window_to_8bit(values: np.ndarray, window: Window, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 (LINEAR) and C.11.2.1.3 (LINEAR_EXACT, SIGMOID) windowing to 0..255."""
    center, width = np.float32(window.center), np.float32(window.width)
    if function == "SIGMOID":
        scaled = 127.5 * (1 + np.tanh(2 * (values - center) / width))  # = 255 / (1 + exp(-4 (x - c) / w))
    elif function == "LINEAR_EXACT":
        scaled = ((values - center) / width + np.float32(0.5)) * 255
    else:
        span = max(width - 1, np.float32(1e-6))  # C.11.2.1.2.1: Window Width >= 1; width 1 is a threshold
        scaled = ((values - (center - np.float32(0.5))) / span + np.float32(0.5)) * 255
        scaled = np.where(values <= center - np.float32(0.5) - (width - 1) / 2, np.float32(0), scaled)
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def voi_lut_to_8bit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """PS3.3 C.11.2.1.1 the first item of the VOI LUT Sequence, its output scaled to 0..255."""
    try:
        output = apply_voi(np.rint(values).astype(np.int32), ds, index=0)
    except Exception as exc:  # noqa: BLE001 - a malformed LUT raises anything from struct to numpy errors
        raise RenderError(f"the VOI LUT Sequence cannot be applied: {exc}") from exc
    depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return np.rint(output.astype(np.float32) * (255 / (2**depth - 1))).astype(np.uint8)


def color_to_rgb8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """A decoded colour frame as 8-bit RGB: PALETTE COLOR through its LUT (C.7.6.3.1.5, C.7.9), deep RGB scaled."""
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(frame, ds)[..., :3]
        except Exception as exc:  # noqa: BLE001 - a malformed palette raises anything from struct to numpy errors
            raise RenderError(f"the palette colour lookup table cannot be applied: {exc}") from exc
        return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb
    bits = int(ds.get("BitsStored") or 8)
    return (frame >> (bits - 8)).astype(np.uint8) if bits > 8 else frame.astype(np.uint8, copy=False)
