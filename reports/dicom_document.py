"""The signed report as DICOM objects, to go back to the station in the study it reports on.

- :func:`encapsulated_pdf`: the signed PDF as an Encapsulated PDF Storage instance (PS3.3 A.45.1, the
  Encapsulated Document module C.24.2), in the same study and patient as the images, in a new series of its own
  (Modality DOC). Encapsulated Document Length (0042,0015) holds the PDF's true length: the OB value is padded to
  an even length (PS3.5 7.1.1), so a receiver takes exactly ``EncapsulatedDocument[:EncapsulatedDocumentLength]``
  and gets the signed bytes back unchanged, PDF signature intact.
- :func:`basic_text_sr`: the findings and impression as a Basic Text SR (PS3.3 A.35.1) following the shape of
  TID 2000 (Basic Diagnostic Imaging Report, PS3.16), for systems that file text rather than documents.

The Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) are copied from one stored instance of the study,
so a PACS files the report with its images. Every object is written in UTF-8 (Specific Character Set ISO_IR 192:
Chinese names and text). UIDs may be given (the caller derives them from the signature, so a retried delivery
sends the very same object) or are made with :func:`pydicom.uid.generate_uid`.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from io import BytesIO
from pathlib import Path
from typing import Literal

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
#: Waveform storage SOP classes that carry ECG leads (PS3.4 B.5): a study of these is reported as an ECG.
ECG_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.1.2", "1.2.840.10008.5.1.4.1.1.9.1.3",
    "1.2.840.10008.5.1.4.1.1.9.2.1",
})
#: What the document is (LOINC, CID 7000 "Diagnostic Imaging Report Document Titles" and its ECG counterpart).
DOCUMENT_CONCEPTS = {
    "imaging": ("18748-4", "LN", "Diagnostic imaging study"),
    "ecg": ("11524-6", "LN", "EKG study"),
}
TITLES = {
    ("imaging", "zh"): "影像诊断报告", ("imaging", "en"): "Diagnostic imaging report",
    ("ecg", "zh"): "心电图诊断报告", ("ecg", "en"): "ECG report",
}
SERIES_DESCRIPTIONS = {"zh": "诊断报告", "en": "Report"}
MANUFACTURER = "Telerad"

#: Patient module (C.7.1.1) and Patient Study module (C.7.2.2) attributes taken from the study's own instance.
PATIENT_ATTRIBUTES = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate",
    "PatientSex", "OtherPatientIDsSequence", "PatientAge", "PatientSize", "PatientWeight",
)
#: General Study module (C.7.2.1) attributes: the report joins the same study.
STUDY_ATTRIBUTES = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription",
)
#: Type 2 attributes: present, empty when the study's instance lacks them.
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
           "ReferringPhysicianName", "StudyID", "AccessionNumber")

Kind = Literal["imaging", "ecg"]
Language = Literal["zh", "en"]


@dataclass(frozen=True)
class Evidence:
    """An instance the report was made from (Source Instance Sequence, SR evidence)."""

    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str


def study_source(source: Dataset | bytes | str | Path) -> Dataset:
    """The stored instance whose patient and study the report joins, read without its pixel data."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, bytes):
        return dcmread(BytesIO(source), stop_before_pixels=True, force=True)
    return dcmread(source, stop_before_pixels=True, force=True)


def kind_of(source: Dataset) -> Kind:
    """Whether the study is an ECG (Modality ECG, or a waveform SOP class carrying ECG leads) or imaging."""
    modality = str(source.get("Modality", "")).upper()
    return "ecg" if modality == "ECG" or str(source.get("SOPClassUID", "")) in ECG_SOP_CLASSES else "imaging"


def encapsulated_pdf(
    study_dataset_source: Dataset | bytes | str | Path,
    pdf_bytes: bytes,
    *,
    signed_at: datetime,
    signer: str,
    series_number: int,
    instance_number: int,
    title: str | None = None,
    kind: Kind | None = None,
    language: Language = "zh",
    timezone: tzinfo = UTC,
    organization: str = "",
    evidence: Iterable[Evidence] = (),
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """The Encapsulated PDF Storage instance (PS3.3 A.45.1) of a signed report ``pdf_bytes``.

    ``study_dataset_source`` is one stored instance of the study (a dataset, its bytes or its path): its patient
    and study modules are copied. ``signed_at`` (aware) becomes the Content Date and Time, in ``timezone``, with
    Timezone Offset From UTC. ``evidence`` lists the study's instances the report derives from.
    """
    if not pdf_bytes.startswith(b"%PDF-"):
        raise ValueError("the document is not a PDF (it does not start with %PDF-)")
    source = study_source(study_dataset_source)
    kind = kind or kind_of(source)
    ds = _common(source, ENCAPSULATED_PDF_STORAGE, signed_at, timezone, sop_instance_uid)
    # Encapsulated Document Series module (C.24.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = SERIES_DESCRIPTIONS[language]
    _equipment(ds, organization)
    # SC Equipment module (C.8.6.1): made on a workstation
    ds.ConversionType = "WSD"
    # Encapsulated Document module (C.24.2)
    local = signed_at.astimezone(timezone)
    ds.InstanceNumber = instance_number
    ds.ContentDate = local.strftime("%Y%m%d")
    ds.ContentTime = local.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # the PDF names the patient
    ds.DocumentTitle = title or TITLES[(kind, language)]
    ds.ConceptNameCodeSequence = Sequence([_code(*DOCUMENT_CONCEPTS[kind])])
    ds.VerificationFlag = "VERIFIED"  # signed by a reader
    ds.ContentCreatorName = signer
    sources = [_reference(item.sop_class_uid, item.sop_instance_uid) for item in evidence]
    if sources:
        ds.SourceInstanceSequence = Sequence(sources)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf_bytes + b"\0" if len(pdf_bytes) % 2 else pdf_bytes
    ds.EncapsulatedDocumentLength = len(pdf_bytes)
    return ds


def basic_text_sr(
    study_dataset_source: Dataset | bytes | str | Path,
    *,
    findings: str,
    impression: str,
    signed_at: datetime,
    signer: str,
    series_number: int,
    instance_number: int,
    addenda: Iterable[str] = (),
    kind: Kind | None = None,
    language: Language = "zh",
    timezone: tzinfo = UTC,
    organization: str = "",
    evidence: Iterable[Evidence] = (),
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """The report's text as a Basic Text SR (PS3.3 A.35.1), shaped as TID 2000 (PS3.16).

    The root CONTAINER is titled by the document concept (LOINC); it holds the observer (HAS OBS CONTEXT,
    Person Observer Name), a Findings container with the findings TEXT, an Impressions container with the
    impression TEXT and any signed addenda (DCM 121078). The document is complete and verified by ``signer``
    (SR Document General module, C.17.2).
    """
    source = study_source(study_dataset_source)
    kind = kind or kind_of(source)
    local = signed_at.astimezone(timezone)
    ds = _common(source, BASIC_TEXT_SR_STORAGE, signed_at, timezone, sop_instance_uid)
    # SR Document Series module (C.17.1)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = SERIES_DESCRIPTIONS[language]
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    _equipment(ds, organization)
    # SR Document General module (C.17.2)
    ds.InstanceNumber = instance_number
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    ds.ContentDate = local.strftime("%Y%m%d")
    ds.ContentTime = local.strftime("%H%M%S")
    observer = Dataset()
    observer.VerifyingObserverName = signer
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    observer.VerifyingOrganization = organization or MANUFACTURER
    observer.VerificationDateTime = local.strftime("%Y%m%d%H%M%S") + _offset(local)
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.PerformedProcedureCodeSequence = Sequence()
    evidence = list(evidence)
    if evidence:
        ds.CurrentRequestedProcedureEvidenceSequence = Sequence([_hierarchy(ds.StudyInstanceUID, evidence)])
    # SR Document Content module (C.17.3): the root container and its tree
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(*DOCUMENT_CONCEPTS[kind])])
    ds.ContinuityOfContent = "SEPARATE"
    items = [_item("HAS OBS CONTEXT", "PNAME", ("121008", "DCM", "Person Observer Name"), PersonName=signer)]
    items.append(_container(("121070", "DCM", "Findings"), [("121071", "DCM", "Finding", findings)]))
    parts = [("121073", "DCM", "Impression", impression)]
    parts += [("121078", "DCM", "Addendum", text) for text in addenda]
    items.append(_container(("121072", "DCM", "Impressions"), parts))
    ds.ContentSequence = Sequence(items)
    return ds


def _common(source: Dataset, sop_class: str, signed_at: datetime, timezone: tzinfo, sop_uid: str | None) -> Dataset:
    """File meta, SOP Common (C.12.1), Patient and General Study modules."""
    if signed_at.tzinfo is None:
        raise ValueError("signed_at must be timezone-aware")
    if "StudyInstanceUID" not in source:
        raise ValueError("the study's instance has no Study Instance UID")
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    local = signed_at.astimezone(timezone)
    ds.InstanceCreationDate = local.strftime("%Y%m%d")
    ds.InstanceCreationTime = local.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = _offset(local)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    for keyword in PATIENT_ATTRIBUTES + STUDY_ATTRIBUTES:
        if keyword in source:
            # Read through the source's own character set, then written again in UTF-8.
            element = deepcopy(source[keyword])
            if element.VR == "PN" and element.value is not None:
                element.value = str(element.value)
            ds[element.tag] = element
        elif keyword in _TYPE_2:
            setattr(ds, keyword, "")
    return ds


def _equipment(ds: Dataset, organization: str) -> None:
    """General Equipment module (C.7.5.1): Telerad made this object."""
    ds.Manufacturer = MANUFACTURER
    if organization:
        ds.InstitutionName = organization[:64]


def _offset(moment: datetime) -> str:
    """Timezone Offset From UTC (&ZZXX) of an aware time."""
    minutes = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence item (PS3.3 8.8)."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def _hierarchy(study_uid: str, evidence: list[Evidence]) -> Dataset:
    """A Hierarchical SOP Instance Reference Macro item (PS3.3 C.17.2.1) for the study's evidence."""
    by_series: dict[str, list[Dataset]] = {}
    for item in evidence:
        by_series.setdefault(item.series_uid, []).append(_reference(item.sop_class_uid, item.sop_instance_uid))
    study = Dataset()
    study.StudyInstanceUID = study_uid
    series_items = []
    for series_uid, references in by_series.items():
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        series.ReferencedSOPSequence = Sequence(references)
        series_items.append(series)
    study.ReferencedSeriesSequence = Sequence(series_items)
    return study


def _item(relationship: str, value_type: str, concept: tuple[str, str, str], **values: object) -> Dataset:
    """One SR content item (PS3.3 C.17.3, Document Content Macro)."""
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([_code(*concept)])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _container(concept: tuple[str, str, str], texts: list[tuple[str, str, str, str]]) -> Dataset:
    """A CONTAINS CONTAINER holding CONTAINS TEXT items (empty text is left out, and so is an empty sequence)."""
    container = _item("CONTAINS", "CONTAINER", concept, ContinuityOfContent="SEPARATE")
    children = [_item("CONTAINS", "TEXT", (value, scheme, meaning), TextValue=text)
                for value, scheme, meaning, text in texts if text.strip()]
    if children:
        container.ContentSequence = Sequence(children)
    return container
