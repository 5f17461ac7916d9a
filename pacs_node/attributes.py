"""The attributes the archive index needs, read from an encoded DICOM instance.

The whole dataset is parsed (values are decoded lazily, only for the attributes
read here), so the receiving path stays lean; uncompressed Pixel Data shorter
than its image needs (a transfer cut short) is refused rather than kept. Person names are decoded with the instance's
Specific Character Set (GB18030, GBK, ISO_IR 192, ...) and kept as Unicode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

_UID = re.compile(r"[0-9]+(\.[0-9]+)*", re.ASCII)  # PS3.5 9.1, at most 64 characters
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class UnreadableInstance(ValueError):
    """The bytes are not a DICOM instance the archive can index; the message says why."""


@dataclass(frozen=True)
class InstanceAttributes:
    """What the index keeps of one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    patient_id: str
    issuer_of_patient_id: str
    other_patient_ids: tuple[tuple[str, str], ...]
    patient_name: str
    patient_sex: str
    patient_birth_date: str
    accession_number: str
    study_id: str
    study_date: str
    study_time: str
    study_description: str
    referring_physician: str
    modality: str
    body_part: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    priority: str


def _check_native_pixel_length(ds: Dataset, transfer_syntax: str) -> None:
    """Refuse uncompressed Pixel Data shorter than Rows × Columns × Samples × Frames × Bits Allocated (PS3.5 8.1.1)."""
    if "PixelData" not in ds or not transfer_syntax or UID(transfer_syntax).is_compressed:
        return
    frames = int(ds.get("NumberOfFrames") or 1)
    bits = int(ds.BitsAllocated) * int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * frames
    expected, actual = (bits + 7) // 8, len(ds.PixelData)
    if actual < expected:
        raise UnreadableInstance(f"Pixel Data is truncated: {actual} of {expected} bytes")


def read_attributes(data: bytes) -> InstanceAttributes:
    """Parse the indexed attributes of a PS3.10 file; raises :class:`UnreadableInstance`."""
    try:
        ds = dcmread(BytesIO(data))
        transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta else ""
        values = {keyword: text_of(ds, keyword) for keyword in REQUIRED_UIDS}
        _check_native_pixel_length(ds, transfer_syntax)
    except UnreadableInstance:
        raise
    except (AttributeError, InvalidDicomError, OSError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError) as exc:
        raise UnreadableInstance(f"cannot parse dataset: {exc}") from exc
    missing = [keyword for keyword in REQUIRED_UIDS if not values[keyword]]
    if missing:
        raise UnreadableInstance(f"missing {', '.join(missing)}")
    for keyword in REQUIRED_UIDS:
        if len(values[keyword]) > 64 or not _UID.fullmatch(values[keyword]):
            raise UnreadableInstance(f"invalid {keyword} {values[keyword][:24]!r}")
    if not transfer_syntax:
        raise UnreadableInstance("missing Transfer Syntax UID in the file meta information")
    try:
        return InstanceAttributes(
            sop_class_uid=values["SOPClassUID"],
            sop_instance_uid=values["SOPInstanceUID"],
            study_uid=values["StudyInstanceUID"],
            series_uid=values["SeriesInstanceUID"],
            transfer_syntax=transfer_syntax,
            patient_id=text_of(ds, "PatientID"),
            issuer_of_patient_id=text_of(ds, "IssuerOfPatientID"),
            other_patient_ids=tuple(
                (text_of(item, "PatientID"), text_of(item, "IssuerOfPatientID"))
                for item in ds.get("OtherPatientIDsSequence", [])
                if text_of(item, "PatientID")
            ),
            patient_name=text_of(ds, "PatientName"),
            patient_sex=text_of(ds, "PatientSex"),
            patient_birth_date=text_of(ds, "PatientBirthDate"),
            accession_number=text_of(ds, "AccessionNumber"),
            study_id=text_of(ds, "StudyID"),
            study_date=text_of(ds, "StudyDate"),
            study_time=text_of(ds, "StudyTime"),
            study_description=text_of(ds, "StudyDescription"),
            referring_physician=text_of(ds, "ReferringPhysicianName"),
            modality=text_of(ds, "Modality"),
            body_part=text_of(ds, "BodyPartExamined"),
            series_number=_integer(ds, "SeriesNumber"),
            series_description=text_of(ds, "SeriesDescription"),
            instance_number=_integer(ds, "InstanceNumber"),
            priority=_priority(ds),
        )
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise UnreadableInstance(f"cannot read attributes: {exc}") from exc


def text_of(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` in ``ds`` as stripped text (multiple values joined by a backslash), or ""."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip().rstrip("\x00")


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _priority(ds: Dataset) -> str:
    """The study's own priority (PS3.3 C.4.11 Requested Procedure Priority), if it carries one."""
    for item in ds.get("RequestAttributesSequence", []):
        if text_of(item, "RequestedProcedurePriority"):
            return text_of(item, "RequestedProcedurePriority").upper()
    return (text_of(ds, "RequestedProcedurePriority") or text_of(ds, "StudyPriorityID")).upper()
