"""The delivery jobs: on ``report.signed``, make the signature's deliveries and send them; a sweep retries.

``report.signed`` is announced by drafting and signing (see :mod:`telerad.events`) when a report becomes final
or an addendum is signed. :func:`on_report_signed` makes one delivery per channel for the signature
(:func:`reports.delivery.create_deliveries`: a repeated event finds them made and adds nothing) and sends those
due at once. :func:`retry_sweep`, run every ``delivery.sweep_seconds`` by the worker's cron scheduler, sends every
pending delivery whose next attempt is due. A failed send is written to the delivery's row, never raised: the
event's job succeeds, and the table shows what is pending, sent or failed and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import sessionmaker

from pacs_node.node import storage_for
from pacs_node.storage import FileStorage
from reports.delivery import create_deliveries, deliver_due
from telerad import clock, events
from telerad.config import Config
from telerad.db import make_engine, make_session_factory

log = logging.getLogger(__name__)

TOPIC = "report.signed"


@dataclass
class Context:
    """What the delivery jobs of this worker process work with."""

    config: Config
    sessions: sessionmaker
    storage: FileStorage


_context: Context | None = None


def configure(config: Config, sessions: sessionmaker | None = None) -> Context:
    """Set up the jobs of this process (the worker calls it, then :func:`subscribe`, before working)."""
    global _context
    _context = Context(config, sessions or make_session_factory(make_engine(config.database_url)), storage_for(config))
    return _context


def subscribe() -> None:
    """Subscribe :func:`on_report_signed` to ``report.signed`` (explicit, so importing this module sends nothing)."""
    events.subscribe(TOPIC)(on_report_signed)


def context() -> Context:
    """The configured context; jobs fail clearly when the worker was not set up."""
    if _context is None:
        raise RuntimeError("reports.delivery_jobs.configure() was not called in this worker")
    return _context


def on_report_signed(event_id: int, topic: str, payload: dict[str, Any]) -> dict[str, int]:
    """Make the signature's deliveries (once) and send those due now."""
    ctx = context()
    signature_id = int(payload["signature_id"])
    at = clock.now()
    with ctx.sessions() as session, session.begin():
        create_deliveries(session, ctx.config, signature_id, at)
    counts = deliver_due(ctx.sessions, ctx.config, ctx.storage, at, signature_id=signature_id)
    log.info("event %d: report signature %d delivered: %s", event_id, signature_id, counts)
    return counts


def retry_sweep() -> dict[str, int]:
    """The periodic job: send every pending delivery whose next attempt is due."""
    ctx = context()
    counts = deliver_due(ctx.sessions, ctx.config, ctx.storage, clock.now())
    if any(counts.values()):
        log.info("delivery sweep: %s", counts)
    return counts
