"""Turnaround figures over a period, from the tasks' milestones, and the backlog of open work.

Each reading task keeps the time of its milestones (:data:`reading_queue.tasks.MILESTONE_OF`): first
assignment (push) or claim (pull), first opening in the viewer, signature, first delivery of the signed report.
For each milestone the figures cover the tasks that reached it in the period ``[since, until)``: how many,
and the median, 90th percentile and maximum of the minutes from the study's completion to it — overall and
per sending site, modality, priority and reader (the reader who has the task: the signer once signed). The
share within the deadline is the share of the tasks signed in the period that were signed by their deadline.

Durations are differences of UTC instants, so a daylight-saving change never lengthens or shortens one; a
server clock stepped back can make a milestone look earlier than the completion, which counts as 0 minutes.
Days (the daily trend) are days in the service's time zone.

PostgreSQL computes the percentiles itself (``percentile_cont`` over grouping sets, one index range scan per
milestone); other databases send the rows and Python computes the same figures the same way.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, ColumnElement, Double, Select, and_, case, cast, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session, aliased

from reading_queue.figures_cache import FiguresCache, cache_key
from reading_queue.tasks import ReadingTask, TaskState
from telerad.sites import Site
from telerad.users import User

BACKLOG_BUCKETS = (("overdue", timedelta(0)), ("under_1h", timedelta(hours=1)), ("under_4h", timedelta(hours=4)),
                   ("under_24h", timedelta(hours=24)))
#: Each interval measured, from the study's completion to the milestone of this name.
INTERVALS = {
    "assigned": ReadingTask.assigned_at,
    "opened": ReadingTask.first_opened_at,
    "signed": ReadingTask.signed_at,
    "delivered": ReadingTask.delivered_at,
}
#: The groupings of the figures, each a column of the task.
DIMENSIONS = {
    "site": ReadingTask.source_site_id,
    "modality": ReadingTask.modality,
    "priority": ReadingTask.priority,
    "reader": ReadingTask.reader_id,
}
BUCKET_NAMES = (*(name for name, _ in BACKLOG_BUCKETS), "later")
BREACHES_SHOWN = 100
DASHBOARD_DAYS = 30  # the dashboard's period unless another is chosen


@dataclass(frozen=True)
class Filters:
    """Which tasks the figures cover; ``None`` means any. ``site`` and ``centre`` are site codes, ``reader`` a
    user name; the period is ``[since, until)``."""

    site: str | None = None
    centre: str | None = None
    modality: str | None = None
    priority: str | None = None
    reader: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Stats:
    """One interval's figures for one group: the minutes from completion to a milestone."""

    count: int
    median: float | None
    p90: float | None
    maximum: float | None
    on_time: int | None = None  # signature only: how many were signed by their deadline

    def as_dict(self) -> dict[str, Any]:
        """The figures in minutes, rounded to hundredths; ``None`` where there is nothing to measure."""
        body: dict[str, Any] = {
            "count": self.count,
            "median_minutes": _minutes(self.median),
            "p90_minutes": _minutes(self.p90),
            "max_minutes": _minutes(self.maximum),
        }
        if self.on_time is not None:
            body["within_deadline_share"] = round(self.on_time / self.count, 4) if self.count else None
        return body


EMPTY = Stats(0, None, None, None)


def percentile(values: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile (the ``inclusive`` method, as PostgreSQL's ``percentile_cont``)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stats_of(seconds: Sequence[float], on_time: int | None = None) -> Stats:
    """The figures of a list of durations in seconds."""
    if not seconds:
        return Stats(0, None, None, None, on_time)
    return Stats(len(seconds), statistics.median(seconds), percentile(seconds, 0.9), max(seconds), on_time)


def _minutes(seconds: float | None) -> float | None:
    return round(seconds / 60, 2) if seconds is not None else None


# --- which tasks ---------------------------------------------------------------------------------


def scope(session: Session, filters: Filters, visible: ColumnElement[bool]) -> ColumnElement[bool]:
    """The reading tasks the filters and the caller's view cover (any time); unknown codes match nothing."""
    conditions = [ReadingTask.kind == "read", visible]
    for code, column in ((filters.site, ReadingTask.source_site_id), (filters.centre, ReadingTask.centre_site_id)):
        if code:
            conditions.append(column == select(Site.id).where(Site.code == code).scalar_subquery())
    if filters.modality:
        conditions.append(ReadingTask.modality == filters.modality)
    if filters.priority:
        conditions.append(ReadingTask.priority == filters.priority)
    if filters.reader:
        conditions.append(ReadingTask.reader_id == select(User.id).where(User.name == filters.reader).scalar_subquery())
    return and_(*conditions)


def _in_period(column: Any, filters: Filters) -> ColumnElement[bool]:
    bounds = [column.is_not(None)]
    if filters.since:
        bounds.append(column >= filters.since)
    if filters.until:
        bounds.append(column < filters.until)
    return and_(*bounds)


# --- the figures ---------------------------------------------------------------------------------


def _group_stats(
    session: Session, name: str, where: ColumnElement[bool], filters: Filters
) -> dict[tuple[str | None, Any], Stats]:
    """The figures of one interval, overall (key ``(None, None)``) and per ``(dimension, value)``."""
    milestone = INTERVALS[name]
    where = and_(where, _in_period(milestone, filters))
    on_time = (
        func.sum(case((ReadingTask.signed_at <= ReadingTask.due_at, 1), else_=0)) if name == "signed" else None
    )
    if session.get_bind().dialect.name == "postgresql":
        return _grouped_in_postgresql(session, _seconds(milestone), where, on_time)
    rows = session.execute(
        select(*DIMENSIONS.values(), ReadingTask.opened_at, milestone, ReadingTask.due_at).where(where)
    ).all()
    samples: dict[tuple[str | None, Any], list[tuple[float, bool]]] = defaultdict(list)
    for *keys, opened, reached, due in rows:
        sample = (max((reached - opened).total_seconds(), 0.0), reached <= due)
        samples[(None, None)].append(sample)
        for dimension, key in zip(DIMENSIONS, keys, strict=True):
            samples[(dimension, key)].append(sample)
    return {
        group: stats_of([s for s, _ in values], sum(ok for _, ok in values) if on_time is not None else None)
        for group, values in samples.items()
    }


def _grouped_in_postgresql(
    session: Session, seconds: Any, where: ColumnElement[bool], on_time: Any
) -> dict[tuple[str | None, Any], Stats]:
    """The same figures computed by PostgreSQL: ``percentile_cont`` over one grouping set per dimension."""
    columns = list(DIMENSIONS.values())
    grouping = func.grouping(*columns)
    quantiles = _quantiles(seconds)
    query = (
        select(grouping, *columns, func.count(), quantiles, func.max(seconds), on_time if on_time is not None else literal(None))
        .where(where)
        .group_by(func.grouping_sets(tuple_(), *(tuple_(column) for column in columns)))
    )
    found: dict[tuple[str | None, Any], Stats] = {}
    full = (1 << len(columns)) - 1
    for flags, *values, count, quantiles, maximum, punctual in session.execute(query):
        if not count:  # the overall row of an empty period
            continue
        if flags == full:
            group: tuple[str | None, Any] = (None, None)
        else:  # the one dimension grouped on has its bit clear (the first column is the highest bit)
            index = next(i for i in range(len(columns)) if not flags & (1 << (len(columns) - 1 - i)))
            group = (list(DIMENSIONS)[index], values[index])
        found[group] = Stats(count, *quantiles, maximum, int(punctual) if on_time is not None else None)
    return found


def _seconds(milestone: Any) -> Any:
    """PostgreSQL's seconds from completion to ``milestone``, never negative."""
    return func.greatest(func.date_part("epoch", milestone - ReadingTask.opened_at), 0.0)  # double, not numeric


def _quantiles(seconds: Any) -> Any:
    """PostgreSQL's median and 90th percentile of ``seconds``, from one sort."""
    return func.percentile_cont(cast(array([0.5, 0.9]), ARRAY(Double))).within_group(seconds)


def _labels(session: Session, dimension: str, keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """How each key of a dimension is shown: a site's code and names, a reader's name and display name."""
    keys = [key for key in keys if key is not None]
    if dimension == "site" and keys:
        rows = session.execute(select(Site.id, Site.code, Site.name, Site.name_en).where(Site.id.in_(keys)))
        return {row.id: {"key": row.code, "name": row.name, "name_en": row.name_en or row.name} for row in rows}
    if dimension == "reader" and keys:
        rows = session.execute(select(User.id, User.name, User.display_name).where(User.id.in_(keys)))
        return {row.id: {"key": row.name, "name": row.display_name or row.name, "name_en": row.name} for row in rows}
    return {key: {"key": key, "name": key, "name_en": key} for key in keys}


def signatures_by_reader(session: Session, reader_ids: Iterable[int], since: datetime, until: datetime) -> dict[int, Stats]:
    """Completion to signature of the reading tasks each reader signed in ``[since, until)`` (their scorecards)."""
    where = and_(ReadingTask.kind == "read", ReadingTask.reader_id.in_(list(reader_ids)))
    grouped = _group_stats(session, "signed", where, Filters(since=since, until=until))
    return {key: stats for (dimension, key), stats in grouped.items() if dimension == "reader"}


def _daily(session: Session, where: ColumnElement[bool], filters: Filters, timezone: str) -> list[dict[str, Any]]:
    """Per local day of signature: how many were signed, their median and 90th percentile, and the share on time."""
    where = and_(where, _in_period(ReadingTask.signed_at, filters))
    if session.get_bind().dialect.name == "postgresql":
        day = func.date(func.timezone(timezone, ReadingTask.signed_at))
        seconds = _seconds(ReadingTask.signed_at)
        query = (
            select(day, func.count(), _quantiles(seconds),
                   func.max(seconds), func.sum(case((ReadingTask.signed_at <= ReadingTask.due_at, 1), else_=0)))
            .where(where).group_by(day).order_by(day)
        )
        by_day = {row[0].isoformat(): Stats(row[1], row[2][0], row[2][1], row[3], int(row[4])) for row in session.execute(query)}
    else:
        zone = ZoneInfo(timezone)
        samples: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        for opened, signed, due in session.execute(
            select(ReadingTask.opened_at, ReadingTask.signed_at, ReadingTask.due_at).where(where)
        ):
            samples[signed.astimezone(zone).date().isoformat()].append(
                (max((signed - opened).total_seconds(), 0.0), signed <= due)
            )
        by_day = {day: stats_of([s for s, _ in v], sum(ok for _, ok in v)) for day, v in sorted(samples.items())}
    return [{"date": day, **stats.as_dict()} for day, stats in by_day.items()]


def breaches(session: Session, where: ColumnElement[bool], filters: Filters, limit: int | None) -> dict[str, Any]:
    """Deadlines missed in the period (by the time of the breach), latest first, with their recorded reasons."""
    where = and_(where, _in_period(ReadingTask.breached_at, filters))
    count = session.scalar(select(func.count()).where(where))
    reader = aliased(User)
    query = (
        select(ReadingTask, Site.code, Site.name, reader.name.label("reader"))
        .join(Site, Site.id == ReadingTask.source_site_id)
        .outerjoin(reader, reader.id == ReadingTask.reader_id)
        .where(where)
        .order_by(ReadingTask.breached_at.desc(), ReadingTask.id.desc())
    )
    items = [
        {
            "task_id": task.id,
            "study_uid": task.study_uid,
            "site": code,
            "site_name": name,
            "modality": task.modality,
            "priority": task.priority,
            "opened_at": task.opened_at.isoformat(),
            "due_at": task.due_at.isoformat(),
            "breached_at": task.breached_at.isoformat(),
            "reason": task.breach_reason,
            "reader": reader_name,
            "signed_at": task.signed_at.isoformat() if task.signed_at else None,
        }
        for task, code, name, reader_name in session.execute(query.limit(limit) if limit is not None else query)
    ]
    return {"count": count, "items": items}


def time_left_bucket(at: datetime) -> Any:
    """Which of :data:`BUCKET_NAMES` a running task falls in at ``at``, by the time left to its deadline."""
    return case(*((ReadingTask.due_at < at + limit, name) for name, limit in BACKLOG_BUCKETS), else_="later")


def backlog(session: Session, where: ColumnElement[bool], at: datetime, reader: str | None = None) -> dict[str, int]:
    """Open work by time left at ``at``; for a reader, what they hold or were given and have not yet claimed."""
    bucket = time_left_bucket(at)
    query: Select = select(bucket, func.count()).where(where, ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)))
    if reader:
        owner = func.coalesce(ReadingTask.holder_id, ReadingTask.assignee_id)
        query = query.join(User, User.id == owner).where(User.name == reader)
    counts = dict.fromkeys(BUCKET_NAMES, 0)
    counts.update(dict(session.execute(query.group_by(bucket)).all()))
    return counts


def figures(
    session: Session,
    filters: Filters,
    visible: ColumnElement[bool],
    at: datetime,
    timezone: str = "UTC",
    breaches_shown: int | None = BREACHES_SHOWN,
    cache: FiguresCache | None = None,
) -> dict[str, Any]:
    """Every turnaround figure of the period — per interval overall and per dimension, the daily trend, the
    breaches (:func:`period_figures`, through ``cache`` when given) — and the backlog now."""
    def compute() -> dict[str, Any]:
        return period_figures(session, filters, visible, timezone, breaches_shown)

    if cache is None:
        period = compute()
    else:
        key = figures_key(visible, filters, timezone, breaches_shown)
        period = cache.through(key, at, filters.until is not None and filters.until <= at, compute)
    everything = scope(session, replace(filters, reader=None), visible)  # a reader's backlog: what they hold
    return {**period, "backlog": backlog(session, everything, at, filters.reader)}


def figures_key(visible: ColumnElement[bool], filters: Filters, timezone: str, breaches_shown: int | None) -> str:
    """The cache key of :func:`period_figures` with these arguments (the worker's warm-up fills the same key)."""
    return cache_key(visible, filters=asdict(filters), timezone=timezone, breaches=breaches_shown)


def period_figures(
    session: Session, filters: Filters, visible: ColumnElement[bool], timezone: str, breaches_shown: int | None
) -> dict[str, Any]:
    """The figures of the period: per interval overall and per dimension, the daily trend and the breaches.

    ``signed`` and ``delivered`` repeat the overall figures of those intervals (the first shape of this API).
    """
    where = scope(session, filters, visible)
    intervals = {name: _group_stats(session, name, where, filters) for name in INTERVALS}
    groups: dict[str, list[dict[str, Any]]] = {}
    for dimension in DIMENSIONS:
        keys = sorted({key for stats in intervals.values() for (d, key) in stats if d == dimension and key is not None},
                      key=str)
        labels = _labels(session, dimension, keys)
        groups[dimension] = [
            {
                **labels.get(key, {"key": key, "name": key, "name_en": key}),
                **{name: stats.get((dimension, key), empty_stats(name)).as_dict() for name, stats in intervals.items()},
            }
            for key in keys
        ]
        groups[dimension].sort(key=lambda item: str(item["key"]))
    overall = {name: stats.get((None, None), empty_stats(name)).as_dict() for name, stats in intervals.items()}
    signed = overall["signed"]
    return {
        "filters": {key: (value.isoformat() if isinstance(value, datetime) else value) for key, value in asdict(filters).items()},
        "timezone": timezone,
        "intervals": overall,
        "groups": groups,
        "daily": _daily(session, where, filters, timezone),
        "breaches": breaches(session, where, filters, breaches_shown),
        "signed": {key: signed[key] for key in ("count", "median_minutes", "p90_minutes", "within_deadline_share")},
        "delivered": {key: overall["delivered"][key] for key in ("count", "median_minutes", "p90_minutes")},
    }


def last_days(at: datetime, timezone: str, days: int) -> tuple[datetime, datetime]:
    """The ``days`` whole days in ``timezone`` up to and including the day of ``at``: ``[since, until)``."""
    zone = ZoneInfo(timezone)
    today = at.astimezone(zone).date()
    return (datetime.combine(today - timedelta(days=days - 1), time(), zone),
            datetime.combine(today + timedelta(days=1), time(), zone))


def empty_stats(name: str) -> Stats:
    """The figures of an interval with nothing in it (the signature's share within deadline counts 0 of 0)."""
    return Stats(0, None, None, None, 0) if name == "signed" else EMPTY
