"""Critical findings (危急值): the sending station is told at once and must acknowledge.

When a report flagged critical gets its first signature (``final``, or
``preliminary``: a critical finding does not wait for a countersignature),
:func:`notify_station` writes a :class:`~reports.models.CriticalNotice`, an
in-app notice for the station's staff and, where ``reading.webhook_url`` is
set, a webhook delivery (SMS or WeChat gateway). The station acknowledges
(:func:`acknowledge`); a notice still unacknowledged ``reports.critical_ack_minutes``
after it was sent is escalated once to the supervisors of the reading centre
(:func:`escalate_unacknowledged`, run periodically by :mod:`reports.jobs`).
Every step is on the task's timeline and in the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue.notify import Notifier
from reading_queue.tasks import ReadingTask, record
from reports.models import CriticalNotice, Report
from telerad import audit
from telerad.config import Config
from telerad.sites import Site
from telerad.users import User

ESCALATION_BATCH = 200


def category_name(config: Config, code: str) -> tuple[str, str]:
    """The Chinese and English names of a critical category (the code itself when it is not configured)."""
    for category in config.reports.critical_categories:
        if category.code == code:
            return category.name, category.name_en or category.code
    return code, code


def station_staff(session: Session, site_id: int) -> list[User]:
    """Who is told for a site: its active station users, else those of the nearest site above it that has some."""
    site = session.get(Site, site_id)
    while site is not None:
        staff = session.scalars(
            select(User).where(User.site_id == site.id, User.role == "station", User.active.is_(True)).order_by(User.id)
        ).all()
        if staff or site.level in ("county", "province"):
            return list(staff)
        site = session.get(Site, site.parent_id) if site.parent_id else None
    return []


def supervisors(session: Session, centre_site_id: int) -> list[User]:
    """The active supervisors of a reading centre, else of the nearest site above it that has some."""
    site = session.get(Site, centre_site_id)
    while site is not None:
        found = session.scalars(
            select(User).where(User.site_id == site.id, User.role == "supervisor", User.active.is_(True)).order_by(User.id)
        ).all()
        if found:
            return list(found)
        site = session.get(Site, site.parent_id) if site.parent_id else None
    return []


def open_notice(session: Session, report: Report, lock: bool = False) -> CriticalNotice | None:
    """The report's critical notice, if one was sent."""
    query = select(CriticalNotice).where(CriticalNotice.report_id == report.id).order_by(CriticalNotice.id.desc()).limit(1)
    return session.scalar(query.with_for_update() if lock else query)


def notify_station(
    session: Session, config: Config, notifier: Notifier, report: Report, study: Study, task: ReadingTask,
    actor: str, at: datetime,
) -> CriticalNotice:
    """Tell the sending station of the report's critical finding now (once per report).

    The caller flushes ``notifier`` before its transaction commits.
    """
    existing = open_notice(session, report)
    if existing is not None:
        return existing
    notice = CriticalNotice(
        report_id=report.id, study_pk=study.id, site_id=study.site_id, category=report.critical_category, notified_at=at,
    )
    session.add(notice)
    session.flush()
    name, name_en = category_name(config, report.critical_category)
    patient = study.patient
    message = (
        f"危急值 CRITICAL: {name} / {name_en} — {patient.name or patient.patient_id} ({task.modality}, study "
        f"{study.study_uid}): {report.impression.strip()[:160]} — 请立即处理并确认 / act now and acknowledge"
    )[:400]
    staff = station_staff(session, study.site_id)
    notifier.notify(session, staff, task, "critical", message, at)
    record(session, task, "critical_notified", actor, category=report.critical_category,
           users=[user.name for user in staff], notice_id=notice.id)
    audit.record(session, actor, "critical.notified", "study", study.study_uid, category=report.critical_category,
                 users=[user.name for user in staff], notice_id=notice.id)
    return notice


def acknowledge(session: Session, notice: CriticalNotice, task: ReadingTask, study: Study, user: User,
                at: datetime) -> bool:
    """Record the station's acknowledgement; ``False`` when it was acknowledged already (nothing changes)."""
    if notice.acknowledged_at is not None:
        return False
    notice.acknowledged_at, notice.acknowledged_by_id = at, user.id
    waited = round((at - notice.notified_at).total_seconds())
    record(session, task, "critical_acknowledged", user.name, notice_id=notice.id, seconds=waited)
    audit.record(session, user.name, "critical.acknowledged", "study", study.study_uid, notice_id=notice.id,
                 seconds=waited)
    return True


def escalate_unacknowledged(session: Session, config: Config, notifier: Notifier, at: datetime) -> list[int]:
    """Tell the centre's supervisors of every critical finding unacknowledged for ``critical_ack_minutes``, once.

    Safe in several workers at once (rows are taken with ``SKIP LOCKED``). Returns the notice ids escalated;
    the caller flushes ``notifier`` before its transaction commits.
    """
    overdue = at - timedelta(minutes=config.reports.critical_ack_minutes)
    notices = session.scalars(
        select(CriticalNotice)
        .where(
            CriticalNotice.acknowledged_at.is_(None),
            CriticalNotice.escalated_at.is_(None),
            CriticalNotice.notified_at <= overdue,
        )
        .order_by(CriticalNotice.notified_at, CriticalNotice.id)
        .limit(ESCALATION_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for notice in notices:
        notice.escalated_at = at
        report = session.get(Report, notice.report_id)
        study = session.get(Study, notice.study_pk)
        task = session.get(ReadingTask, report.task_id) if report.task_id else None
        if task is None:
            task = session.scalar(select(ReadingTask).where(ReadingTask.study_pk == study.id, ReadingTask.kind == "read"))
        people = supervisors(session, task.centre_site_id)
        site = session.get(Site, notice.site_id)
        minutes = int((at - notice.notified_at).total_seconds() // 60)
        name, name_en = category_name(config, notice.category)
        message = (
            f"危急值未确认 CRITICAL UNACKNOWLEDGED: {name} / {name_en} — {site.name} has not acknowledged for "
            f"{minutes} min (study {study.study_uid}); please call the station"
        )[:400]
        notifier.notify(session, people, task, "critical_escalation", message, at)
        record(session, task, "critical_escalated", "system", notice_id=notice.id, minutes=minutes,
               supervisors=[user.name for user in people])
        audit.record(session, "system", "critical.escalated", "study", study.study_uid, notice_id=notice.id,
                     supervisors=[user.name for user in people])
    return [notice.id for notice in notices]
