"""The reports' periodic job: escalating critical findings the station has not acknowledged.

Run by rq's cron scheduler beside the service-level sweep (:mod:`telerad.worker`).
Safe in several workers at once: each notice is taken with ``SKIP LOCKED``
and escalated once (``escalated_at``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import sessionmaker

from reading_queue.notify import Notifier, configured_notifier
from reports.critical import escalate_unacknowledged
from telerad import clock
from telerad.config import Config
from telerad.db import make_engine, make_session_factory

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the reports' jobs of this worker process work with."""

    config: Config
    sessions: sessionmaker
    notifier: Notifier


_context: Context | None = None


def configure(config: Config, sessions: sessionmaker | None = None) -> Context:
    """Set up the jobs of this process (the worker calls it before working)."""
    global _context
    _context = Context(
        config, sessions or make_session_factory(make_engine(config.database_url)),
        configured_notifier(config.reading.webhook_url),
    )
    return _context


def context() -> Context:
    """The configured context; jobs fail clearly when the worker was not set up."""
    if _context is None:
        raise RuntimeError("reports.jobs.configure() was not called in this worker")
    return _context


def critical_sweep() -> dict[str, int]:
    """The periodic job: tell the supervisors of critical findings unacknowledged for ``critical_ack_minutes``."""
    ctx = context()
    at = clock.now()
    with ctx.sessions() as session, session.begin():
        escalated = escalate_unacknowledged(session, ctx.config, ctx.notifier, at)
        ctx.notifier.flush(session)
    if escalated:
        log.info("critical findings escalated to supervisors: %s", escalated)
    return {"escalated": len(escalated)}
