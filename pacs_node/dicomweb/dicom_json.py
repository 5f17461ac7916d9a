"""The DICOM JSON model (PS3.18 Annex F.2): attributes from the index, and data sets read from stored files.

Binary values longer than :data:`INLINE_LIMIT` bytes are not sent inline (``InlineBinary``) but as a
``BulkDataURI`` (F.2.6) that the bulk data resource serves; they are not even read from the file. A bulk
data element is addressed by its path: top-level ``7FE00010``, nested ``00540016/0/00181072`` (tag, item
index from 0, tag ...). Text is Unicode (decoded with the instance's Specific Character Set).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

log = logging.getLogger(__name__)

INLINE_LIMIT = 1024
#: The same limit as pydicom counts it: characters of base64.
_INLINE_BASE64 = INLINE_LIMIT // 3 * 4
_NUMBERS = {"IS": int, "US": int, "UL": int, "SS": int, "SL": int, "SV": int, "UV": int,
            "DS": float, "FL": float, "FD": float}
_UNSPLIT = {"LT", "ST", "UT", "UR"}  # text VRs whose value may hold a backslash (PS3.5 6.2)
_BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_DATA = 0x7FE00010

BulkURI = Callable[[str], str]


def key(tag: int) -> str:
    """The JSON member name of an attribute: its tag as eight upper-case hexadecimal digits."""
    return f"{tag:08X}"


def element(vr: str, value: Any) -> dict[str, Any]:
    """One attribute in the JSON model from an index value (``None`` or ``""``: present without value).

    A sequence's value is its items, already in the JSON model.
    """
    if value is None or value == "" or value == []:
        return {"vr": vr}
    if vr == "SQ":
        return {"vr": vr, "Value": list(value)}
    values = value.split("\\") if isinstance(value, str) and vr not in _UNSPLIT else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(name) for name in values]}
    if vr in _NUMBERS:
        return {"vr": vr, "Value": [_NUMBERS[vr](item) for item in values]}
    return {"vr": vr, "Value": values}


def attribute(keyword: str, value: Any) -> tuple[str, dict[str, Any]]:
    """``(member name, element)`` of the attribute ``keyword`` with an index value."""
    return key(tag_for_keyword(keyword)), element(dictionary_VR(keyword), value)


def _person_name(name: str) -> dict[str, str]:
    """A PN value's component groups (F.2.2): alphabetic, ideographic, phonetic."""
    groups = zip(("Alphabetic", "Ideographic", "Phonetic"), name.split("="), strict=False)
    return {group: text for group, text in groups if text}


def read_header(path: Path, tags: list[int] | None = None) -> Dataset:
    """The data set of a stored file, large values left unread in the file (only ``tags``, if given)."""
    if tags is not None:
        return dcmread(path, stop_before_pixels=True, specific_tags=tags)
    return dcmread(path, defer_size=INLINE_LIMIT)


def dataset(ds: Dataset, bulk_uri: BulkURI, tags: set[int] | None = None, path: str = "") -> dict[str, Any]:
    """A data set (or the ``tags`` of it) in the JSON model, large binary values as bulk data URIs."""
    result: dict[str, Any] = {}
    for tag in ds.keys():
        if (tag & 0xFFFF) == 0 or (tags is not None and tag not in tags):
            continue  # group lengths are not part of the model
        where = f"{path}{key(tag)}"
        try:
            result[key(tag)] = _element(ds, tag, where, bulk_uri)
        except Exception as exc:  # noqa: BLE001 - pydicom raises anything on values it cannot decode
            log.warning("attribute %s not encoded as JSON: %s", where, exc)
    if "00080005" in result:
        result["00080005"] = element("CS", "ISO_IR 192")  # every value above is now Unicode
    return result


def _element(ds: Dataset, tag: int, where: str, bulk_uri: BulkURI) -> dict[str, Any]:
    raw = ds.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None:  # deferred: large, still in the file
        vr = raw.VR or _dictionary_vr(tag)
        if vr in _BINARY or " or " in vr:
            return {"vr": _binary_vr(vr, ds, raw.length), "BulkDataURI": bulk_uri(where)}
    elem = ds[tag]
    if elem.VR == "SQ":
        items = [dataset(item, bulk_uri, path=f"{where}/{index}/") for index, item in enumerate(elem.value)]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    return elem.to_json_dict(lambda _elem: bulk_uri(where), _INLINE_BASE64)


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(Tag(tag))
    except KeyError:
        return "UN"


def _binary_vr(vr: str, ds: Dataset, length: int) -> str:
    """An ambiguous binary VR (``OB or OW``) resolved as PS3.5 A.1 and 8.2 do for Pixel Data."""
    if " or " not in vr:
        return vr
    choices = vr.split(" or ")
    encapsulated = length == 0xFFFFFFFF
    if "OB" in choices and (encapsulated or int(ds.get("BitsAllocated", 16) or 16) <= 8):
        return "OB"
    return "OW" if "OW" in choices else choices[0]
