"""The live board of a reading centre: what is waiting, what is late and who holds it, who is on duty with
how much open work, and which stations have sent nothing today.

Everything is read at one instant ``at`` and restricted to what the supervisor may see (their centre and the
sites below it); each part is one query on an index, whatever the size of the history.
"""

from __future__ import annotations

import math
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from pacs_node.index import Study
from reading_queue.assignment import on_duty, weighted_load
from reading_queue.tasks import ReadingTask, TaskEvent, TaskState
from reading_queue.turnaround import BUCKET_NAMES, time_left_bucket
from telerad.config import ReadingSection
from telerad.sites import Site
from telerad.users import User

RUNNING = (TaskState.OPEN, TaskState.CLAIMED)
OVERDUE_SHOWN = 200
STATION_LEVELS = ("township", "village")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def backlog_table(session: Session, where: ColumnElement[bool], at: datetime) -> dict[str, Any]:
    """Open reading work by time left, overall and per modality and priority (one grouped query)."""
    bucket, names = time_left_bucket(at), BUCKET_NAMES
    rows = session.execute(
        select(bucket, ReadingTask.modality, ReadingTask.priority, func.count())
        .where(where, ReadingTask.kind == "read", ReadingTask.state.in_(RUNNING))
        .group_by(bucket, ReadingTask.modality, ReadingTask.priority)
    ).all()
    table: dict[str, Any] = {"total": dict.fromkeys(names, 0), "by_modality": {}, "by_priority": {}}
    for name, modality, priority, count in rows:
        table["total"][name] += count
        for part, key in (("by_modality", modality), ("by_priority", priority)):
            table[part].setdefault(key, dict.fromkeys(names, 0))[name] += count
    return table


def overdue(session: Session, where: ColumnElement[bool], at: datetime, limit: int = OVERDUE_SHOWN) -> list[dict[str, Any]]:
    """Running tasks past their deadline, the latest deadline last, with who has each and since when."""
    holder, assignee = aliased(User), aliased(User)
    since = (
        select(func.max(TaskEvent.at))
        .where(TaskEvent.task_id == ReadingTask.id, TaskEvent.kind.in_(("claimed", "assigned", "reassigned")))
        .scalar_subquery()
    )
    rows = session.execute(
        select(ReadingTask, Site.code, Site.name, holder.name, holder.display_name, assignee.name,
               assignee.display_name, since)
        .join(Site, Site.id == ReadingTask.source_site_id)
        .outerjoin(holder, holder.id == ReadingTask.holder_id)
        .outerjoin(assignee, assignee.id == ReadingTask.assignee_id)
        .where(where, ReadingTask.state.in_(RUNNING), ReadingTask.due_at < at)
        .order_by(ReadingTask.due_at, ReadingTask.id)
        .limit(limit)
    ).all()
    return [
        {
            "task_id": task.id,
            "kind": task.kind,
            "study_uid": task.study_uid,
            "site": code,
            "site_name": site_name,
            "modality": task.modality,
            "priority": task.priority,
            "due_at": _iso(task.due_at),
            "overdue_minutes": math.floor((at - task.due_at).total_seconds() / 60),
            "holder": holder_name,
            "holder_name": holder_display or holder_name,
            "held_since": _iso(held_since) if (holder_name or assignee_name) else None,
            "assignee": assignee_name,
            "assignee_name": assignee_display or assignee_name,
        }
        for task, code, site_name, holder_name, holder_display, assignee_name, assignee_display, held_since in rows
    ]


def readers(session: Session, policy: ReadingSection, site_ids: set[int], at: datetime) -> list[dict[str, Any]]:
    """The readers and consultants of ``site_ids``: on duty now or not, with their open work."""
    people = session.scalars(
        select(User)
        .where(User.site_id.in_(site_ids), User.role.in_(("reader", "consultant")), User.active.is_(True))
        .order_by(User.name)
    ).all()
    present = on_duty(session, policy, list(people), at)
    load = weighted_load(session, [user.id for user in people], at)
    holding = dict(session.execute(
        select(ReadingTask.holder_id, func.count())
        .where(ReadingTask.holder_id.in_([user.id for user in people]), ReadingTask.state == TaskState.CLAIMED)
        .group_by(ReadingTask.holder_id)
    ).all()) if people else {}
    board = [
        {
            "name": user.name,
            "display_name": user.display_name or user.name,
            "modalities": list(user.modalities),
            "expert": user.expert,
            "on_duty": user.id in present,
            "open": load[user.id][1],
            "weighted": load[user.id][0],
            "holding": holding.get(user.id, 0),
        }
        for user in people
    ]
    return sorted(board, key=lambda reader: (not reader["on_duty"], reader["name"]))


def silent_stations(session: Session, site_ids: set[int], at: datetime, timezone: str) -> list[dict[str, Any]]:
    """Stations of ``site_ids`` that have sent nothing since midnight (service time zone), with their last study."""
    midnight = datetime.combine(at.astimezone(ZoneInfo(timezone)).date(), time(), ZoneInfo(timezone))
    last = (
        select(Study.last_received_at)
        .where(Study.site_id == Site.id)
        .order_by(Study.last_received_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    sent_today = exists().where(Study.site_id == Site.id, Study.last_received_at >= midnight)
    rows = session.execute(
        select(Site.code, Site.name, Site.name_en, last)
        .where(Site.id.in_(site_ids), Site.level.in_(STATION_LEVELS), ~sent_today)
        .order_by(Site.code)
    ).all()
    return [
        {"code": code, "name": name, "name_en": name_en or name, "last_received_at": _iso(last_at)}
        for code, name, name_en, last_at in rows
    ]


def board(
    session: Session, policy: ReadingSection, visible: ColumnElement[bool], site_ids: set[int], at: datetime
) -> dict[str, Any]:
    """The whole live board for a supervisor who sees ``visible`` tasks and the sites ``site_ids``."""
    return {
        "at": _iso(at),
        "backlog": backlog_table(session, visible, at),
        "overdue": overdue(session, and_(visible, ReadingTask.kind == "read"), at),
        "readers": readers(session, policy, site_ids, at),
        "silent_stations": silent_stations(session, site_ids, at, policy.timezone),
    }
