"""Reading tasks and their timeline.

A task is one piece of reading work: a study to read at a county centre, or a
consult (会诊) at the province linked to it. Its state is kept on the row for
fast worklists; its history is an append-only list of :class:`TaskEvent`, from
which turnaround figures and the audit trail are computed.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from pacs_node.index import Study
from telerad import clock
from telerad.config import ReadingSection
from telerad.db import Base, BigId
from telerad.sites import LEVELS, Site

IMAGING_MODALITIES = ("CT", "CR", "DX", "MR", "US", "MG", "RF", "XA", "OT", "DOC")
MODALITIES = (*IMAGING_MODALITIES, "ECG")
PRIORITIES = ("STAT", "URGENT", "ROUTINE")
_DICOM_PRIORITY = {"STAT": "STAT", "HIGH": "URGENT", "URGENT": "URGENT", "MEDIUM": "ROUTINE", "ROUTINE": "ROUTINE", "LOW": "ROUTINE"}


class TaskState(enum.StrEnum):
    """Where a task is: waiting for a reader, held by one, or done."""

    OPEN = "open"
    CLAIMED = "claimed"
    SIGNED = "signed"
    CANCELLED = "cancelled"


class ReadingTask(Base):
    """One study to read (or one consult to answer), with its deadline and who has it."""

    __tablename__ = "reading_tasks"
    __table_args__ = (
        Index("ix_reading_tasks_centre_state_due", "centre_site_id", "state", "due_at"),
        Index("ix_reading_tasks_state_due", "state", "due_at"),
        # Each reader's open work (assignment's weighted load): the holder, else the assignee.
        Index("ix_reading_tasks_owner_state_due", func.coalesce(text("holder_id"), text("assignee_id")), "state", "due_at"),
        # Turnaround over a period: one range per milestone (reading_queue.turnaround).
        Index("ix_reading_tasks_kind_assigned", "kind", "assigned_at"),
        Index("ix_reading_tasks_kind_first_opened", "kind", "first_opened_at"),
        Index("ix_reading_tasks_kind_signed", "kind", "signed_at"),
        Index("ix_reading_tasks_kind_delivered", "kind", "delivered_at"),
        Index("ix_reading_tasks_kind_breached", "kind", "breached_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # read | consult
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("reading_tasks.id"), index=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(16))  # imaging | ecg
    modality: Mapped[str] = mapped_column(String(16))
    source_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    centre_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    priority: Mapped[str] = mapped_column(String(8))
    priority_source: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime]  # study completion: the service-level clock starts here
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=TaskState.OPEN)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    lease_until: Mapped[datetime | None]
    reminders_sent: Mapped[int] = mapped_column(default=0)
    next_check_at: Mapped[datetime | None] = mapped_column(index=True)  # the next service-level milestone
    escalated_at: Mapped[datetime | None]
    breached_at: Mapped[datetime | None]
    breach_reason: Mapped[str | None] = mapped_column(String(200))
    signed_at: Mapped[datetime | None]
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Milestones for turnaround, each kept by :func:`record` from the first event that reaches it.
    assigned_at: Mapped[datetime | None]  # first assigned (push) or claimed (pull)
    first_opened_at: Mapped[datetime | None]  # first opened in the viewer by a reader
    delivered_at: Mapped[datetime | None]  # the signed report first delivered to the station
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # who has the reading: the signer once signed


class TaskEvent(Base):
    """An append-only, timestamped state change of a task, with its actor."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("reading_tasks.id"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UrgencyMark(Base):
    """The urgency a station marked for a study (at upload or afterwards)."""

    __tablename__ = "urgency_marks"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    priority: Mapped[str] = mapped_column(String(8))
    marked_by: Mapped[str] = mapped_column(String(64))
    marked_at: Mapped[datetime]


#: A study's status as a station sees it, from the state of its reading task (none yet: just received).
STUDY_STATUS = {None: "received", TaskState.OPEN.value: "waiting", TaskState.CLAIMED.value: "being_read",
                TaskState.SIGNED.value: "reported", TaskState.CANCELLED.value: "cancelled"}


#: The turnaround milestone each kind of event reaches (the first such event sets it).
MILESTONE_OF = {"assigned": "assigned_at", "claimed": "assigned_at", "opened": "first_opened_at",
                "signed": "signed_at", "report_delivered": "delivered_at"}


def record(session: Session, task: ReadingTask, kind: str, actor: str, **detail: Any) -> TaskEvent:
    """Append an event to the task's timeline (written with the caller's transaction) and keep its milestones."""
    event = TaskEvent(task_id=task.id, at=clock.now(), actor=actor, kind=kind, detail=detail)
    session.add(event)
    milestone = MILESTONE_OF.get(kind)
    if milestone is not None and getattr(task, milestone) is None:
        setattr(task, milestone, event.at)
    return event


def service_for(modality: str) -> str:
    """Which service reads a modality: the ECG centre or imaging."""
    return "ecg" if modality == "ECG" else "imaging"


def primary_modality(modalities: str) -> str:
    """The modality a study is read for (ECG wins: it goes to the ECG physicians)."""
    listed = [m for m in modalities.split("\\") if m]
    if "ECG" in listed:
        return "ECG"
    return next((m for m in listed if m in IMAGING_MODALITIES and m not in ("OT", "DOC")), listed[0] if listed else "OT")


def choose_priority(
    policy: ReadingSection, marked: str | None, study_priority: str, site_code: str, modality: str
) -> tuple[str, str]:
    """The task's priority and where it came from: station mark, the study, a rule, or the default."""
    if marked in PRIORITIES:
        return marked, "station"
    if study_priority.upper() in _DICOM_PRIORITY:
        return _DICOM_PRIORITY[study_priority.upper()], "study"
    for rule in policy.priority_rules:
        if rule.site in (None, site_code) and rule.modality in (None, modality):
            return rule.priority, "rule"
    return policy.default_priority, "default"


def centre_for(session: Session, site_id: int, level: str) -> Site:
    """The nearest site at ``level`` (county or province) at or above ``site_id`` in the alliance tree."""
    site = session.get(Site, site_id)
    while site is not None and LEVELS.index(site.level) > LEVELS.index(level):
        site = session.get(Site, site.parent_id) if site.parent_id else None
    if site is None or site.level != level:
        raise LookupError(f"no {level} site above site {site_id}")
    return site


def due(policy: ReadingSection, kind: str, priority: str, opened_at: datetime) -> datetime:
    """When a task of ``kind`` and ``priority`` opened at ``opened_at`` must be signed."""
    minutes = (policy.consult_turnaround_minutes if kind == "consult" else policy.turnaround_minutes)[priority]
    return opened_at + timedelta(minutes=minutes)


def milestones(policy: ReadingSection, task: ReadingTask) -> list[tuple[str, datetime]]:
    """The task's service-level milestones in order: reminders, escalation, breach."""
    allowed = task.due_at - task.opened_at
    marks = [(f"reminder-{n + 1}", fraction) for n, fraction in enumerate(policy.reminder_fractions)]
    marks += [("escalation", policy.escalation_fraction), ("breach", 1.0)]
    return [(name, task.opened_at + allowed * fraction) for name, fraction in marks]


def next_milestone(policy: ReadingSection, task: ReadingTask) -> datetime | None:
    """When the service-level clock must next look at ``task`` (``None``: nothing left to do)."""
    passed = task.reminders_sent + (task.escalated_at is not None) + (task.breached_at is not None)
    upcoming = milestones(policy, task)[passed:]
    return upcoming[0][1] if upcoming else None


def create_read_task(session: Session, policy: ReadingSection, study_uid: str, actor: str = "system") -> ReadingTask | None:
    """Create the reading task for a complete study, once; ``None`` if it exists already or the study is unknown."""
    if session.scalar(select(ReadingTask.id).where(ReadingTask.dedupe_key == f"read:{study_uid}")) is not None:
        return None
    # Locked like a station's urgency mark locks it, so a mark made meanwhile is never missed.
    study = session.scalar(select(Study).where(Study.study_uid == study_uid).with_for_update())
    if study is None:
        return None
    modality = primary_modality(study.modalities)
    site = session.get(Site, study.site_id)
    mark = session.get(UrgencyMark, study_uid)
    priority, source = choose_priority(policy, mark.priority if mark else None, study.priority, site.code, modality)
    opened_at = study.completed_at or clock.now()
    centre = centre_for(session, study.site_id, "province" if site.level == "province" else "county")
    task = ReadingTask(
        dedupe_key=f"read:{study_uid}",
        kind="read",
        study_pk=study.id,
        study_uid=study_uid,
        service=service_for(modality),
        modality=modality,
        source_site_id=study.site_id,
        centre_site_id=centre.id,
        priority=priority,
        priority_source=source,
        opened_at=opened_at,
        due_at=due(policy, "read", priority, opened_at),
        state=TaskState.OPEN,
        reminders_sent=0,
    )
    task.next_check_at = next_milestone(policy, task)
    session.add(task)
    session.flush()
    record(session, task, "created", actor, priority=priority, priority_source=source, due_at=task.due_at.isoformat())
    return task


def note_opening(session: Session, study_pk: int, reader_role: str, reader_name: str) -> None:
    """A reader (or consultant) opened the study in the viewer: the first time goes on its reading task's timeline."""
    if reader_role not in ("reader", "consultant"):
        return
    task = session.scalar(select(ReadingTask).where(ReadingTask.study_pk == study_pk, ReadingTask.kind == "read"))
    if task is not None and task.first_opened_at is None:
        record(session, task, "opened", reader_name)
