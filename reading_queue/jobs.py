"""The reading queue's jobs: tasks from announced studies, and the periodic service-level sweep.

Handlers are idempotent: an event delivered twice (after a Redis outage, say)
finds its task already made and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from reading_queue.assignment import route
from reading_queue.access import visible_tasks
from reading_queue.figures_cache import FiguresCache
from reading_queue.notify import Notifier, configured_notifier, deliver_webhooks
from reading_queue.sla import sweep
from reading_queue.tasks import ReadingTask, TaskEvent, create_read_task, record
from reading_queue.turnaround import BREACHES_SHOWN, DASHBOARD_DAYS, Filters, figures_key, last_days, period_figures
from telerad import broker, clock, events
from telerad.config import Config, ReadingSection
from telerad.db import make_engine, make_session_factory
from telerad.sites import Site
from telerad.users import User

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the jobs of this worker process work with."""

    policy: ReadingSection
    sessions: sessionmaker
    notifier: Notifier
    figures: FiguresCache | None = None  # the turnaround figures kept in Redis, when there is one


_context: Context | None = None


def configure(config: Config, sessions: sessionmaker | None = None) -> Context:
    """Set up the jobs of this process (the worker calls it before working)."""
    global _context
    _context = Context(
        config.reading, sessions or make_session_factory(make_engine(config.database_url)),
        configured_notifier(config.reading.webhook_url), figures_cache(config),
    )
    return _context


def figures_cache(config: Config) -> FiguresCache | None:
    """The turnaround figures' cache in the configured Redis (none without one: figures are then computed each time)."""
    return FiguresCache(broker.connect(config.redis.url)) if config.redis.url else None


def context() -> Context:
    """The configured context; jobs fail clearly when the worker was not set up."""
    if _context is None:
        raise RuntimeError("reading_queue.jobs.configure() was not called in this worker")
    return _context


@events.subscribe("study.complete")
def on_study_complete(event_id: int, topic: str, payload: dict[str, Any]) -> None:
    """Create and route the reading task of a complete study (once)."""
    ctx = context()
    uid = payload["study_uid"]
    for _ in range(2):
        try:
            with ctx.sessions() as session, session.begin():
                task = create_read_task(session, ctx.policy, uid, actor=f"event:{event_id}")
                if task is None:  # made already (a repeated event), or the study is not in the index
                    return
                centre = session.get(Site, task.centre_site_id)
                route(session, ctx.policy, task, centre.code, clock.now())
                return
        except IntegrityError:
            continue  # another worker made it at the same moment; the next round sees it


@events.subscribe("study.updated")
def on_study_updated(event_id: int, topic: str, payload: dict[str, Any]) -> None:
    """Note late instances on the task's timeline, once per event."""
    ctx = context()
    actor = f"event:{event_id}"
    with ctx.sessions() as session, session.begin():
        task = session.scalar(select(ReadingTask).where(ReadingTask.dedupe_key == f"read:{payload['study_uid']}"))
        if task is None:
            return
        noted = session.scalar(select(TaskEvent.id).where(TaskEvent.task_id == task.id, TaskEvent.actor == actor))
        if noted is None:
            record(session, task, "study_updated", actor, num_instances=payload.get("num_instances"))


def sla_sweep() -> dict[str, int]:
    """The periodic job: run the service-level clock, then post waiting webhooks."""
    ctx = context()
    at = clock.now()
    with ctx.sessions() as session, session.begin():
        result = sweep(session, ctx.policy, ctx.notifier, at)
    posted = deliver_webhooks(ctx.sessions, at)
    counts = {name: len(ids) for name, ids in vars(result).items()} | {"webhooks_posted": posted}
    log.info("service-level sweep: %s", counts)
    return counts


def turnaround_warmup() -> int:
    """The periodic job: compute each supervisor's default dashboard figures (the last
    :data:`DASHBOARD_DAYS` days) into the cache, so their dashboard answers at once. Returns how many views."""
    ctx = context()
    if ctx.figures is None:
        return 0
    at = clock.now()
    since, until = last_days(at, ctx.policy.timezone, DASHBOARD_DAYS)
    views: set[str] = set()
    with ctx.sessions() as session:
        supervisors = session.scalars(
            select(User).where(User.role.in_(("supervisor", "admin")), User.active.is_(True))
        ).all()
        for user in supervisors:
            visible = visible_tasks(session, user)
            filters = Filters(since=since, until=until)
            key = figures_key(visible, filters, ctx.policy.timezone, BREACHES_SHOWN)
            if key in views:
                continue
            views.add(key)
            ctx.figures.put(key, at, False, period_figures(session, filters, visible, ctx.policy.timezone, BREACHES_SHOWN))
    return len(views)
