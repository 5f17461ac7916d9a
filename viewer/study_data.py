"""What the study viewer loads: a study's series and instances in display order, the patient, study and
acquisition details, the reading task, the patient's prior studies, and the stored images behind them.

Nothing here speaks HTTP: :mod:`viewer.study` turns these into responses. Every lookup takes the caller and
asks :mod:`reading_queue.access`; a study the caller may not see is as absent as an unknown one
(:class:`NotVisible`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pacs_node.attributes import text_of
from pacs_node.index import Instance, Patient, Series, Study
from pacs_node.storage import FileStorage
from reading_queue.access import may_see_study, visible_studies, visible_tasks
from reading_queue.tasks import ReadingTask, TaskState, primary_modality
from telerad.sites import Site
from telerad.users import User
from viewer.pixels import frame_value
from viewer.rendering import Image, ImageCache, RenderError

#: SOP classes of the Waveform IODs (PS3.4 B.5: 1.2.840.10008.5.1.4.1.1.9.x): no pixels, drawn by the ECG view.
WAVEFORM_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.9."
PRIORS_SHOWN = 50
HEADER_DEFER_SIZE = 16 * 2**10

#: Acquisition attributes shown beside the images, in this order (PS3.3 C.7.3.1, C.7.5.1, C.8.2.1, C.8.7.2 ...).
ACQUISITION_KEYWORDS = (
    "Modality", "BodyPartExamined", "ProtocolName", "SeriesDescription", "InstitutionName", "StationName",
    "Manufacturer", "ManufacturerModelName", "AcquisitionDate", "AcquisitionTime", "KVP", "XRayTubeCurrent",
    "ExposureTime", "Exposure", "SliceThickness", "SpacingBetweenSlices", "ConvolutionKernel", "ContrastBolusAgent",
    "PatientPosition", "ViewPosition", "DistanceSourceToDetector", "OperatorsName", "PerformingPhysicianName",
)


class NotVisible(LookupError):
    """The study or instance does not exist, or the caller may not see it (the two are not told apart)."""


@dataclass(frozen=True)
class StoredImages:
    """The storage area seen through a per-process cache of parsed images keyed by content (SHA-256)."""

    storage: FileStorage
    cache: ImageCache

    def path(self, instance: Instance) -> Path:
        """The file holding the instance's current version."""
        return self.storage.path(instance.storage_key)

    def image(self, instance: Instance) -> Image:
        """The parsed image of ``instance`` (raises :class:`RenderError` if it has no displayable pixels)."""
        return self.cache.get(instance.sha256, self.path(instance))

    def header(self, instance: Instance) -> Dataset:
        """The instance's attributes without pixel data; large values (waveforms) are read only if asked for."""
        return dcmread(self.path(instance), stop_before_pixels=True, defer_size=HEADER_DEFER_SIZE, force=True)

    def dataset(self, instance: Instance) -> Dataset:
        """The whole instance (for waveforms, whose samples are not pixel data)."""
        return dcmread(self.path(instance), force=True)


def visible_study(session: Session, user: User, study_uid: str) -> Study:
    """The study ``study_uid`` if ``user`` may see it; else :class:`NotVisible`."""
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None or not may_see_study(session, user, study):
        raise NotVisible(f"no study {study_uid} that you may see")
    return study


def visible_instance(session: Session, user: User, sop_uid: str) -> Instance:
    """The instance ``sop_uid`` if ``user`` may see its study; else :class:`NotVisible`."""
    row = session.execute(
        select(Instance, Study).join(Series, Instance.series_pk == Series.id).join(Study, Series.study_pk == Study.id)
        .where(Instance.sop_instance_uid == sop_uid)
    ).first()
    if row is None or not may_see_study(session, user, row.Study):
        raise NotVisible(f"no instance {sop_uid} that you may see")
    return row.Instance


def viewer_kind(study: Study) -> str:
    """Which view opens the study: ``"ecg"`` when it is read as an ECG, else ``"image"``."""
    return "ecg" if primary_modality(study.modalities) == "ECG" else "image"


def is_waveform(instance: Instance) -> bool:
    """Whether the instance is a waveform (ECG) rather than an image."""
    return instance.sop_class_uid.startswith(WAVEFORM_CLASS_PREFIX)


def study_document(session: Session, user: User, study: Study, images: StoredImages) -> dict[str, Any]:
    """Everything the viewer shows of ``study``: patient, study, series with instances in display order,
    acquisition details, the caller's task on it and the patient's prior studies."""
    series = [_series_item(session, row, images) for row in _series_of(session, study)]
    first = next((s["header"] for s in series if s["header"] is not None), None)
    for item in series:
        item["acquisition"] = acquisition_details(item.pop("header"))
    site = session.get(Site, study.site_id)
    return {
        "viewer": viewer_kind(study),
        "patient": patient_details(study.patient, first, study.study_date),
        "study": {
            "uid": study.study_uid,
            "date": _date(study.study_date),
            "time": _time(study.study_time),
            "description": study.description,
            "accession_number": study.accession_number,
            "modalities": [m for m in study.modalities.split("\\") if m],
            "referring_physician": _person(study.referring_physician),
            "site": {"code": site.code, "name": site.name, "name_en": site.name_en},
            "num_instances": study.num_instances,
        },
        "series": series,
        "task": task_summary(session, user, study),
        "priors": prior_studies(session, user, study),
    }


def _series_of(session: Session, study: Study) -> list[Series]:
    return list(
        session.scalars(
            select(Series).where(Series.study_pk == study.id)
            .order_by(Series.series_number.is_(None), Series.series_number, Series.id)
        )
    )


def _series_item(session: Session, series: Series, images: StoredImages) -> dict[str, Any]:
    """One series with its instances in display order; ``header`` (removed by the caller) is its first dataset."""
    rows = session.scalars(select(Instance).where(Instance.series_pk == series.id)).all()
    entries = [_instance_entry(instance, images) for instance in rows]
    entries.sort(key=_display_key)
    return {
        "uid": series.series_uid,
        "number": series.series_number,
        "modality": series.modality,
        "description": series.description,
        "body_part": series.body_part,
        "instances": [item for item, _ in entries],
        "header": entries[0][1] if entries else None,
    }


def _display_key(entry: tuple[dict[str, Any], Dataset | None]) -> tuple[float, float, str]:
    """Instance Number, then the position along the slice normal, then the UID: a stable reading order."""
    item = entry[0]
    number, position = item["number"], item["position"]
    return (math.inf if number is None else number, math.inf if position is None else position, item["sop_uid"])


def _instance_entry(instance: Instance, images: StoredImages) -> tuple[dict[str, Any], Dataset | None]:
    """The instance as the viewer needs it, and its dataset (for the acquisition details)."""
    item: dict[str, Any] = {
        "sop_uid": instance.sop_instance_uid,
        "number": instance.instance_number,
        "version": instance.sha256[:16],
        "kind": "waveform" if is_waveform(instance) else "image",
        "position": None,
    }
    if is_waveform(instance):
        try:
            return item, images.header(instance)
        except (OSError, ValueError) as exc:
            return {**item, "error": f"not a readable DICOM file: {exc}"}, None
    try:
        image = images.image(instance)
        window = image.default_window(0) if image.is_grayscale else None
    except RenderError as exc:
        return {**item, "error": str(exc)}, None
    spacing = image.pixel_spacing()
    item.update(
        rows=image.rows,
        columns=image.columns,
        frames=image.frames,
        photometric=image.photometric,
        modality=image.modality,
        window={"center": window.center, "width": window.width} if window else None,
        spacing={"row_mm": spacing.row_mm, "col_mm": spacing.col_mm, "source": spacing.source} if spacing else None,
        position=slice_position(image.dataset),
    )
    return item, image.dataset


def slice_position(ds: Dataset) -> float | None:
    """The first frame's distance along the slice normal in mm (PS3.3 C.7.6.2.1.1): Image Position (Patient)
    projected on the cross product of the Image Orientation (Patient) direction cosines; ``None`` without them."""
    position = frame_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient")
    orientation = frame_value(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
    try:
        x, y, z = (float(v) for v in position)
        rx, ry, rz, cx, cy, cz = (float(v) for v in orientation)
    except (TypeError, ValueError):
        return None
    normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    distance = x * normal[0] + y * normal[1] + z * normal[2]
    return round(distance, 4) if math.isfinite(distance) else None


def patient_details(patient: Patient, ds: Dataset | None, study_date: str) -> dict[str, Any]:
    """The patient as indexed, with the age at the study (Patient's Age, else from the birth date)."""
    return {
        "name": _person(patient.name),
        "id": patient.patient_id,
        "sex": patient.sex,
        "birth_date": _date(patient.birth_date),
        "age": patient_age(text_of(ds, "PatientAge") if ds is not None else "", patient.birth_date, study_date),
    }


def patient_age(stated: str, birth_date: str, study_date: str) -> dict[str, Any] | None:
    """Age as ``{"value", "unit"}`` with unit D, W, M or Y: Patient's Age (AS, PS3.5 6.2) if valid, else the
    whole years between the birth date and the study date; ``None`` when neither is known."""
    if len(stated) == 4 and stated[:3].isdigit() and stated[3] in "DWMY":
        return {"value": int(stated[:3]), "unit": stated[3]}
    born, on = _parse_date(birth_date), _parse_date(study_date)
    if born is None or on is None or on < born:
        return None
    return {"value": on.year - born.year - ((on.month, on.day) < (born.month, born.day)), "unit": "Y"}


def acquisition_details(ds: Dataset | None) -> list[dict[str, str]]:
    """The acquisition attributes the instance carries, as ``{"keyword", "value"}`` in display order."""
    if ds is None:
        return []
    details = []
    for keyword in ACQUISITION_KEYWORDS:
        value = ds.get(keyword)
        if value is None or text_of(ds, keyword) == "":
            continue
        if ds[keyword].VR == "PN":
            text = ", ".join(_person(str(name)) for name in (value if ds[keyword].VM > 1 else [value]))
        elif keyword.endswith("Date"):
            text = _date(text_of(ds, keyword))
        elif keyword.endswith("Time"):
            text = _time(text_of(ds, keyword))
        else:
            text = text_of(ds, keyword).replace("\\", ", ")
        details.append({"keyword": keyword, "value": text})
    return details


def task_summary(session: Session, user: User, study: Study) -> dict[str, Any] | None:
    """The caller's task on the study (a running one first, the earliest deadline first), or ``None``."""
    running = ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED))
    task = session.scalar(
        select(ReadingTask)
        .where(ReadingTask.study_pk == study.id, visible_tasks(session, user))
        .order_by(running.desc(), ReadingTask.due_at, ReadingTask.id)
        .limit(1)
    )
    if task is None:
        return None
    holder = session.get(User, task.holder_id) if task.holder_id else None
    return {
        "id": task.id,
        "kind": task.kind,
        "state": task.state,
        "priority": task.priority,
        "due_at": task.due_at.isoformat(),
        "holder": holder.display_name or holder.name if holder else None,
    }


def prior_studies(session: Session, user: User, study: Study) -> list[dict[str, Any]]:
    """The patient's other studies the caller may see, newest first: same patient record, or the same person
    at another site (:attr:`Patient.person_key`)."""
    same_person = Study.patient_pk == study.patient_pk
    if study.patient.person_key:
        linked = select(Patient.id).where(Patient.person_key == study.patient.person_key)
        same_person = or_(same_person, Study.patient_pk.in_(linked))
    rows = session.execute(
        select(Study, Site)
        .join(Site, Study.site_id == Site.id)
        .where(same_person, Study.id != study.id, visible_studies(session, user))
        .order_by(Study.study_date.desc(), Study.first_received_at.desc())
        .limit(PRIORS_SHOWN)
    ).all()
    return [
        {
            "study_uid": prior.study_uid,
            "date": _date(prior.study_date),
            "description": prior.description,
            "modalities": [m for m in prior.modalities.split("\\") if m],
            "num_instances": prior.num_instances,
            "site": {"code": site.code, "name": site.name, "name_en": site.name_en},
            "viewer": viewer_kind(prior),
        }
        for prior, site in rows
    ]


def _person(name: str) -> str:
    """A Person Name (PS3.5 6.2.1) for display: components joined by spaces, ideographic form first if any."""
    groups = [" ".join(part for part in group.split("^") if part) for group in str(name).split("=")]
    alphabetic, *others = groups
    ideographic = next((group for group in others if group), "")
    if ideographic and alphabetic:
        return f"{ideographic} ({alphabetic})"
    return ideographic or alphabetic


def _parse_date(value: str) -> date | None:
    try:
        return datetime.strptime(value.strip(), "%Y%m%d").date()
    except ValueError:
        return None


def _date(value: str) -> str:
    """A DA value as ISO 8601 (``2026-03-04``); other text unchanged."""
    parsed = _parse_date(value)
    return parsed.isoformat() if parsed else value


def _time(value: str) -> str:
    """A TM value (``HHMMSS.FFFFFF``, PS3.5 6.2) as ``HH:MM:SS``; other text unchanged."""
    digits = value.split(".")[0].strip()
    if len(digits) in (2, 4, 6) and digits.isdigit():
        return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    return value

