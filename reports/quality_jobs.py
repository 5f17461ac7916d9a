"""The peer-review job: on ``report.signed``, draw the report for quality control (:func:`reports.quality.sample`).

Only a report's first final signature is drawn from; co-signatures and addenda pass through. Idempotent: the draw
is keyed on the report, and a report drawn once has its review, so a repeated event adds nothing. The job
shares the sessions and notifiers of :mod:`reading_queue.jobs`.
"""

from __future__ import annotations

import logging
from typing import Any

import reading_queue.jobs
from reports.quality import sample
from telerad import clock, events
from telerad.config import Config

log = logging.getLogger(__name__)

TOPIC = "report.signed"

_config: Config | None = None


def subscribe(config: Config) -> None:
    """Subscribe :func:`on_report_signed` to ``report.signed`` with this worker's ``config`` (the worker calls it
    after :func:`reading_queue.jobs.configure`)."""
    global _config
    _config = config
    events.subscribe(TOPIC)(on_report_signed)


def on_report_signed(event_id: int, topic: str, payload: dict[str, Any]) -> int | None:
    """Draw the signed report for peer review (once); the review's id, or ``None`` when none was made."""
    if _config is None:
        raise RuntimeError("reports.quality_jobs.subscribe() was not called in this worker")
    ctx = reading_queue.jobs.context()
    with ctx.sessions() as session, session.begin():
        review = sample(session, _config, ctx.notifier, int(payload["signature_id"]), clock.now())
        ctx.notifier.flush(session)
        made = review.id if review is not None else None
    if made is not None:
        log.info("event %d: report %s drawn for peer review %d", event_id, payload.get("report_id"), made)
    return made
