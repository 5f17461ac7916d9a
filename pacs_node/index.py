"""The archive index: patients, studies, series and instances, and their history.

The index says what the storage area holds. Patients belong to the issuer of
their ID (Issuer of Patient ID, or the sending site when absent), so two
villages that both number their patients from 1 are never merged; one person
is linked across sites only through a strong identifier named in the
configuration (``person_key``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, ForeignKey, Index, String, Table, UniqueConstraint, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from pacs_node.attributes import InstanceAttributes
from pacs_node.storage import StoredObject
from telerad import audit, clock
from telerad.db import Base, BigId
from telerad.events import publish


class Patient(Base):
    """A patient as known to one issuer of patient IDs."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("issuer", "patient_id", name="uq_patients_issuer_patient_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(96))
    patient_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(324), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    person_key: Mapped[str | None] = mapped_column(String(160), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StudyState(enum.StrEnum):
    """Where a study is in its life at the node."""

    RECEIVING = "receiving"
    COMPLETE = "complete"


class Study(Base):
    """A study, owned by the site that sent it."""

    __tablename__ = "studies"
    __table_args__ = (
        Index("ix_studies_state_last_received_at", "state", "last_received_at"),
        Index("ix_studies_site_last_received_at", "site_id", "last_received_at"),  # a station's latest study
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    calling_ae: Mapped[str] = mapped_column(String(16))
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    referring_physician: Mapped[str] = mapped_column(String(324), default="")
    modalities: Mapped[str] = mapped_column(String(64), default="")
    priority: Mapped[str] = mapped_column(String(16), default="")
    num_series: Mapped[int] = mapped_column(default=0)
    num_instances: Mapped[int] = mapped_column(default=0)
    size_bytes: Mapped[int] = mapped_column(BigId, default=0)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING)
    update_pending: Mapped[bool] = mapped_column(default=False)
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()


class Series(Base):
    """A series of a study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None]
    description: Mapped[str] = mapped_column(String(200), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    num_instances: Mapped[int] = mapped_column(default=0)


class Instance(Base):
    """One stored instance: the current version of a SOP Instance UID."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None]
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(160))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    calling_ae: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    received_at: Mapped[datetime]


class InstanceVersion(Base):
    """A replaced version of an instance, kept with its file."""

    __tablename__ = "instance_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(160))
    size: Mapped[int] = mapped_column(BigId)
    received_at: Mapped[datetime]
    replaced_at: Mapped[datetime]
    replaced_by_sha256: Mapped[str] = mapped_column(String(64))


class UidCollision(Base):
    """A refused instance whose Study or SOP Instance UID belongs to another site, for an administrator."""

    __tablename__ = "uid_collisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), index=True)
    uid_kind: Mapped[str] = mapped_column(String(16))
    owner_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    sender_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    calling_ae: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(160))
    detected_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class Outcome(enum.StrEnum):
    """What indexing an instance did."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"


class UidCollisionError(Exception):
    """The instance's UID belongs to another site; it was refused and flagged."""

    def __init__(self, uid_kind: str, uid: str, owner: int) -> None:
        super().__init__(f"{uid_kind} UID {uid} belongs to another site")
        self.uid_kind, self.uid, self.owner = uid_kind, uid, owner


@dataclass(frozen=True)
class Sender:
    """Who sent an instance: the site and the calling AE title."""

    site_id: int
    site_code: str
    ae_title: str


def index_instance(
    session: Session,
    attrs: InstanceAttributes,
    stored: StoredObject,
    sender: Sender,
    strong_issuers: frozenset[str] = frozenset(),
) -> Outcome:
    """Record a stored instance in the index within the caller's transaction.

    Raises :class:`UidCollisionError` when the study or instance belongs to
    another site, before anything is written. This is the receiving hot path:
    a handful of Core statements, no ORM unit of work.
    """
    now = clock.now()
    db = session.connection()
    instances, studies, series_table = Instance.__table__, Study.__table__, Series.__table__
    current = db.execute(
        select(
            instances.c.id, instances.c.sha256, instances.c.site_id, instances.c.series_pk, instances.c.size,
            instances.c.version, instances.c.storage_key, instances.c.received_at,
        ).where(instances.c.sop_instance_uid == attrs.sop_instance_uid)
    ).first()
    if current is not None and current.sha256 == stored.sha256:
        return Outcome.DUPLICATE
    if current is not None and current.site_id != sender.site_id:
        raise UidCollisionError("SOP Instance", attrs.sop_instance_uid, current.site_id)
    # Lock the study row so a concurrent completion sweep sees this arrival (PostgreSQL).
    study = db.execute(
        select(studies.c.id, studies.c.site_id, studies.c.patient_pk, studies.c.state, studies.c.modalities)
        .where(studies.c.study_uid == attrs.study_uid)
        .with_for_update()
    ).first()
    if study is not None and study.site_id != sender.site_id:
        raise UidCollisionError("Study Instance", attrs.study_uid, study.site_id)

    patient_pk = _patient_pk(db, attrs, sender, strong_issuers, now)
    study_values = _present(
        accession_number=attrs.accession_number,
        study_id=attrs.study_id,
        study_date=attrs.study_date,
        study_time=attrs.study_time,
        description=attrs.study_description,
        referring_physician=attrs.referring_physician,
        priority=attrs.priority,
    )
    if study is None:
        study_pk = db.execute(
            insert(studies).values(
                study_uid=attrs.study_uid, patient_pk=patient_pk, site_id=sender.site_id, calling_ae=sender.ae_title,
                modalities=attrs.modality, num_series=0, num_instances=0, size_bytes=0,
                state=StudyState.RECEIVING, update_pending=False, first_received_at=now, last_received_at=now,
                **study_values,
            )
        ).inserted_primary_key[0]
    else:
        study_pk = study.id
        if study.patient_pk != patient_pk:
            audit.record(
                session, sender.ae_title, "study.patient_changed", "study", attrs.study_uid,
                old_patient_pk=study.patient_pk, new_patient_pk=patient_pk,
            )
        modalities = study.modalities.split("\\") if study.modalities else []
        if attrs.modality and attrs.modality not in modalities:
            study_values["modalities"] = "\\".join([*modalities, attrs.modality])
        db.execute(
            update(studies)
            .where(studies.c.id == study_pk)
            .values(
                patient_pk=patient_pk, last_received_at=now,
                update_pending=study.state == StudyState.COMPLETE, **study_values,
            )
        )

    series = db.execute(
        select(series_table.c.id, series_table.c.study_pk).where(series_table.c.series_uid == attrs.series_uid)
    ).first()
    series_values = _present(
        modality=attrs.modality,
        series_number=attrs.series_number,
        description=attrs.series_description,
        body_part=attrs.body_part,
    )
    if series is None:
        series_pk = db.execute(
            insert(series_table).values(
                series_uid=attrs.series_uid, study_pk=study_pk, num_instances=0, **series_values
            )
        ).inserted_primary_key[0]
        _count(db, studies, study_pk, num_series=1)
    else:
        series_pk = series.id
        if series.study_pk != study_pk:
            _count(db, studies, series.study_pk, num_series=-1)
            _count(db, studies, study_pk, num_series=1)
            series_values["study_pk"] = study_pk
        if series_values:
            db.execute(update(series_table).where(series_table.c.id == series_pk).values(**series_values))

    instance_values = {
        "series_pk": series_pk,
        "sop_class_uid": attrs.sop_class_uid,
        "instance_number": attrs.instance_number,
        "transfer_syntax": attrs.transfer_syntax,
        "size": stored.size,
        "sha256": stored.sha256,
        "storage_key": stored.key,
        "site_id": sender.site_id,
        "calling_ae": sender.ae_title,
        "received_at": now,
    }
    if current is None:
        db.execute(insert(instances).values(sop_instance_uid=attrs.sop_instance_uid, version=1, **instance_values))
        _count(db, series_table, series_pk, num_instances=1)
        _count(db, studies, study_pk, num_instances=1, size_bytes=stored.size)
        return Outcome.STORED
    db.execute(
        insert(InstanceVersion.__table__).values(
            sop_instance_uid=attrs.sop_instance_uid, version=current.version, sha256=current.sha256,
            storage_key=current.storage_key, size=current.size, received_at=current.received_at,
            replaced_at=now, replaced_by_sha256=stored.sha256,
        )
    )
    db.execute(update(instances).where(instances.c.id == current.id).values(version=current.version + 1, **instance_values))
    if current.series_pk != series_pk:
        _count(db, series_table, current.series_pk, num_instances=-1)
        _count(db, series_table, series_pk, num_instances=1)
    _count(db, studies, study_pk, size_bytes=stored.size - current.size)
    audit.record(
        session, sender.ae_title, "instance.replaced", "instance", attrs.sop_instance_uid,
        old_sha256=current.sha256, new_sha256=stored.sha256, version=current.version + 1,
    )
    return Outcome.REPLACED


def _present(**values: object) -> dict[str, object]:
    """The values the instance actually carries: an absent attribute never erases a known one."""
    return {key: value for key, value in values.items() if value not in ("", None)}


def _count(db: Connection, table: Table, pk: int, **increments: int) -> None:
    """Add ``increments`` to counter columns of one row, atomically in SQL."""
    db.execute(update(table).where(table.c.id == pk).values({name: table.c[name] + by for name, by in increments.items()}))


def flag_collision(session: Session, collision: UidCollisionError, stored: StoredObject, sender: Sender) -> None:
    """Record a refused instance for an administrator, with the file that was refused."""
    session.add(
        UidCollision(
            uid=collision.uid,
            uid_kind=collision.uid_kind,
            owner_site_id=collision.owner,
            sender_site_id=sender.site_id,
            calling_ae=sender.ae_title,
            sha256=stored.sha256,
            storage_key=stored.key,
            detected_at=clock.now(),
        )
    )
    audit.record(
        session, sender.ae_title, "uid.collision", collision.uid_kind.split()[0].lower(), collision.uid,
        sha256=stored.sha256, owner_site_id=collision.owner,
    )


def _patient_pk(
    db: Connection, attrs: InstanceAttributes, sender: Sender, strong_issuers: frozenset[str], now: datetime
) -> int:
    """The patient the instance belongs to, created or brought up to date."""
    patients = Patient.__table__
    issuer = attrs.issuer_of_patient_id or f"site:{sender.site_code}"
    # An instance without a Patient ID is its study's own patient: never pooled with others.
    patient_id = attrs.patient_id or f"(none):{attrs.study_uid}"
    values = _present(
        name=attrs.patient_name,
        sex=attrs.patient_sex,
        birth_date=attrs.patient_birth_date,
        person_key=person_key(attrs, strong_issuers),
    )
    found = db.execute(
        select(patients.c.id, patients.c.name, patients.c.sex, patients.c.birth_date, patients.c.person_key).where(
            patients.c.issuer == issuer, patients.c.patient_id == patient_id
        )
    ).first()
    if found is None:
        defaults = {"name": "", "sex": "", "birth_date": ""}
        return db.execute(
            insert(patients).values(
                issuer=issuer, patient_id=patient_id, site_id=sender.site_id, created_at=now, updated_at=now,
                **{**defaults, **values},
            )
        ).inserted_primary_key[0]
    if any(getattr(found, key) != value for key, value in values.items()):
        db.execute(update(patients).where(patients.c.id == found.id).values(updated_at=now, **values))
    return found.id


def person_key(attrs: InstanceAttributes, strong_issuers: frozenset[str]) -> str | None:
    """The strong identifier that links this patient across sites, if the instance carries one."""
    candidates = [(attrs.patient_id, attrs.issuer_of_patient_id), *attrs.other_patient_ids]
    for value, issuer in candidates:
        if value and issuer in strong_issuers:
            return f"{issuer}:{value}"
    return None


def complete_stable_studies(session: Session, stable_seconds: float) -> list[str]:
    """Announce studies that received nothing for ``stable_seconds``; returns their UIDs.

    A first completion is announced as ``study.complete``; instances that came
    after it as ``study.updated``. Each is announced once, even with several
    processes sweeping at the same time (the state change is conditional).
    """
    now = clock.now()
    candidates = session.scalars(
        select(Study)
        .where(
            (Study.state == StudyState.RECEIVING) | Study.update_pending.is_(True),
            Study.last_received_at <= now - timedelta(seconds=stable_seconds),
        )
        .order_by(Study.last_received_at)
        .limit(500)
        .with_for_update(skip_locked=True)
    ).all()
    announced = []
    for study in candidates:
        first = study.state == StudyState.RECEIVING
        study.state = StudyState.COMPLETE
        study.update_pending = False
        if first:
            study.completed_at = now
        publish(
            session,
            "study.complete" if first else "study.updated",
            study.study_uid,
            study_uid=study.study_uid,
            site_id=study.site_id,
            modalities=study.modalities,
            priority=study.priority,
            num_instances=study.num_instances,
            completed_at=(study.completed_at or now).isoformat(),
        )
        announced.append(study.study_uid)
    return announced
