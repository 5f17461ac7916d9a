"""The viewer's jobs: Telerad's own measurements of every ECG a study brings.

On ``study.complete`` and ``study.updated`` (announced by the node, see
:mod:`telerad.events`) each ECG waveform instance of the study (PS3.4 B.5:
the ECG and hemodynamic waveform storage SOP classes, or Modality ECG) is
read from the storage area, measured (:mod:`viewer.ecg_measurements`) and its
row in ``ecg_measurements`` written.

Handlers are idempotent: an instance whose stored version (SHA-256) was
already measured by this algorithm version is skipped, so a repeated event
changes nothing. A file that cannot be measured gets a row with the reason
instead of failing the job again and again; only a storage failure (the file
cannot be read) fails the job, which the queue then retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import dcmread
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.index import Instance, Series, Study
from pacs_node.node import storage_for
from pacs_node.storage import FileStorage
from telerad import events
from telerad.config import Config
from telerad.db import make_engine, make_session_factory
from viewer.ecg import device_measurements, read_ecg
from viewer.ecg_measurements import ALGORITHM_VERSION, EcgMeasurement, Measurements, measure, store

log = logging.getLogger(__name__)

#: The node's announcements this module answers (see :func:`pacs_node.index.complete_stable_studies`).
TOPICS = ("study.complete", "study.updated")
#: Waveform storage SOP classes that carry ECG leads (PS3.4 B.5, PS3.6 Annex A).
ECG_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.2.1",  # Hemodynamic Waveform Storage (some carts store 12-lead ECGs so)
)


@dataclass
class Context:
    """What the jobs of this worker process work with."""

    sessions: sessionmaker
    storage: FileStorage


@dataclass(frozen=True)
class _Todo:
    sop_instance_uid: str
    storage_key: str
    sha256: str


_context: Context | None = None


def configure(config: Config, sessions: sessionmaker | None = None) -> Context:
    """Set up the jobs of this process (the worker calls it, then :func:`subscribe`, before working)."""
    global _context
    _context = Context(sessions or make_session_factory(make_engine(config.database_url)), storage_for(config))
    return _context


def subscribe() -> None:
    """Subscribe the handlers to the node's study events.

    Explicit rather than at import, so processes that merely import the viewer
    (the web app, other packages' tests) do not measure ECGs.
    """
    for topic in TOPICS:
        events.subscribe(topic)(on_study)


def context() -> Context:
    """The configured context; jobs fail clearly when the worker was not set up."""
    if _context is None:
        raise RuntimeError("viewer.jobs.configure() was not called in this worker")
    return _context


def on_study(event_id: int, topic: str, payload: dict[str, Any]) -> None:
    """Measure the study's ECG instances that have not been measured in their current version."""
    ctx = context()
    study_uid = payload["study_uid"]
    with ctx.sessions() as session:
        todo = _unmeasured(session, study_uid)
    for item in todo:
        _measure_one(ctx, study_uid, item)
    if todo:
        log.info("event %d: measured %d ECG instance(s) of study %s", event_id, len(todo), study_uid)


def _unmeasured(session: Session, study_uid: str) -> list[_Todo]:
    """The study's ECG instances without a row for their current file and this algorithm."""
    rows = session.execute(
        select(Instance.sop_instance_uid, Instance.storage_key, Instance.sha256, EcgMeasurement.sha256,
               EcgMeasurement.algorithm)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .outerjoin(EcgMeasurement, EcgMeasurement.sop_instance_uid == Instance.sop_instance_uid)
        .where(Study.study_uid == study_uid)
        .where(or_(Series.modality == "ECG", Instance.sop_class_uid.in_(ECG_SOP_CLASSES)))
        .order_by(Instance.id)
    ).all()
    return [
        _Todo(uid, key, sha) for uid, key, sha, done_sha, done_by in rows
        if (done_sha, done_by) != (sha, ALGORITHM_VERSION)
    ]


def _measure_one(ctx: Context, study_uid: str, item: _Todo) -> None:
    """Read, measure and record one instance; a file that cannot be measured is recorded with the reason."""
    data = ctx.storage.read(item.storage_key)  # OSError: the job fails and the queue retries it
    result, device, error = None, {}, None
    try:
        ds = dcmread(BytesIO(data))
        device = device_measurements(ds).as_dict()
        result = measure(read_ecg(ds))
    except Exception as exc:  # noqa: BLE001 - any fault of the file is recorded, never retried forever
        error = f"{type(exc).__name__}: {exc}"[:400]
        log.warning("ECG %s of study %s not measured: %s", item.sop_instance_uid, study_uid, error)
    try:
        _write(ctx, study_uid, item, result, device, error)
    except IntegrityError:  # another worker inserted the row at the same moment: update it instead
        _write(ctx, study_uid, item, result, device, error)


def _write(
    ctx: Context, study_uid: str, item: _Todo, result: Measurements | None, device: dict[str, Any], error: str | None
) -> None:
    with ctx.sessions() as session, session.begin():
        store(session, item.sop_instance_uid, study_uid, item.sha256, result, device, error)
