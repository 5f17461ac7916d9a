"""Turnaround figures, computed from the tasks' timelines.

Completion to signed report for every task signed in the period (the signing
event's time against the study's completion), the share signed within the
deadline, completion to the first delivery of the signed report to the station
(its ``report_delivered`` event), and the backlog of open work by time left
(counted in SQL). For a reader, the backlog is what they hold or were assigned.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from reading_queue.tasks import ReadingTask, TaskEvent, TaskState
from telerad.sites import Site
from telerad.users import User

BACKLOG_BUCKETS = (("overdue", timedelta(0)), ("under_1h", timedelta(hours=1)), ("under_4h", timedelta(hours=4)),
                   ("under_24h", timedelta(hours=24)))


@dataclass(frozen=True)
class Filters:
    """Which tasks the figures cover; ``None`` means any."""

    site: str | None = None
    modality: str | None = None
    priority: str | None = None
    reader: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select, filters: Filters, visible: Any) -> Select:
    query = query.where(ReadingTask.kind == "read", visible)
    if filters.site:
        query = query.join(Site, Site.id == ReadingTask.source_site_id).where(Site.code == filters.site)
    if filters.modality:
        query = query.where(ReadingTask.modality == filters.modality)
    if filters.priority:
        query = query.where(ReadingTask.priority == filters.priority)
    return query


def percentile(values: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile (the ``inclusive`` method), e.g. ``share=0.9``."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _to_delivery(session: Session, filters: Filters, visible: Any) -> list[float]:
    """Minutes from completion to the first delivery of the signed report, for tasks first delivered in the period."""
    first = _filtered(
        select(func.min(TaskEvent.at).label("at"), ReadingTask.opened_at)
        .join(ReadingTask, ReadingTask.id == TaskEvent.task_id)
        .where(TaskEvent.kind == "report_delivered"),
        filters,
        visible,
    ).group_by(ReadingTask.id, ReadingTask.opened_at)
    if filters.reader:  # the reader who signed it
        first = first.join(User, User.id == ReadingTask.signed_by_id).where(User.name == filters.reader)
    if filters.since:
        first = first.having(func.min(TaskEvent.at) >= filters.since)
    if filters.until:
        first = first.having(func.min(TaskEvent.at) < filters.until)
    return [(row.at - row.opened_at).total_seconds() / 60 for row in session.execute(first)]


def figures(session: Session, filters: Filters, visible: Any, at: datetime) -> dict[str, Any]:
    """Count, median and 90th percentile (minutes), share within deadline, and backlog by time left."""
    signed = _filtered(
        select(TaskEvent.at, TaskEvent.actor, ReadingTask.opened_at, ReadingTask.due_at).join(
            ReadingTask, ReadingTask.id == TaskEvent.task_id
        ),
        filters,
        visible,
    ).where(TaskEvent.kind == "signed")
    if filters.reader:
        signed = signed.where(TaskEvent.actor == filters.reader)
    if filters.since:
        signed = signed.where(TaskEvent.at >= filters.since)
    if filters.until:
        signed = signed.where(TaskEvent.at < filters.until)
    rows = session.execute(signed).all()
    minutes = [(row.at - row.opened_at).total_seconds() / 60 for row in rows]
    delivered_minutes = _to_delivery(session, filters, visible)
    within = sum(1 for row in rows if row.at <= row.due_at)
    bucket = case(*((ReadingTask.due_at < at + limit, name) for name, limit in BACKLOG_BUCKETS), else_="later")
    open_query = _filtered(select(bucket, func.count()), filters, visible).where(
        ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED))
    )
    if filters.reader:  # what the reader holds, or was given and has not yet claimed
        owner = func.coalesce(ReadingTask.holder_id, ReadingTask.assignee_id)
        open_query = open_query.join(User, User.id == owner).where(User.name == filters.reader)
    backlog = dict.fromkeys([name for name, _ in BACKLOG_BUCKETS] + ["later"], 0)
    backlog.update(dict(session.execute(open_query.group_by(bucket)).all()))
    return {
        "filters": {key: (value.isoformat() if isinstance(value, datetime) else value) for key, value in asdict(filters).items()},
        "signed": {
            "count": len(minutes),
            "median_minutes": round(statistics.median(minutes), 2) if minutes else None,
            "p90_minutes": round(percentile(minutes, 0.9), 2) if minutes else None,
            "within_deadline_share": round(within / len(rows), 4) if rows else None,
        },
        "delivered": {
            "count": len(delivered_minutes),
            "median_minutes": round(statistics.median(delivered_minutes), 2) if delivered_minutes else None,
            "p90_minutes": round(percentile(delivered_minutes, 0.9), 2) if delivered_minutes else None,
        },
        "backlog": backlog,
    }
