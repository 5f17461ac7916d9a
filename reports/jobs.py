"""The reports' periodic job: escalating critical findings the station has not acknowledged.

Run by rq's cron scheduler beside the service-level sweep (:mod:`telerad.worker`).
Safe in several workers at once: each notice is taken with ``SKIP LOCKED``
and escalated once (``escalated_at``).
"""

from __future__ import annotations

import logging

import reading_queue.jobs
from reports.critical import escalate_unacknowledged
from telerad import clock
from telerad.config import Config

log = logging.getLogger(__name__)


_config: Config | None = None


def configure(config: Config) -> None:
    """Set up the jobs of this process (the worker calls it, beside :func:`reading_queue.jobs.configure`,
    whose sessions and notifiers these jobs share)."""
    global _config
    _config = config


def critical_sweep() -> dict[str, int]:
    """The periodic job: tell the supervisors of critical findings unacknowledged for ``critical_ack_minutes``."""
    if _config is None:
        raise RuntimeError("reports.jobs.configure() was not called in this worker")
    ctx = reading_queue.jobs.context()
    at = clock.now()
    with ctx.sessions() as session, session.begin():
        escalated = escalate_unacknowledged(session, _config, ctx.notifier, at)
        ctx.notifier.flush(session)
    if escalated:
        log.info("critical findings escalated to supervisors: %s", escalated)
    return {"escalated": len(escalated)}
