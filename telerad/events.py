"""Events between packages: a transactional outbox relayed to the rq job queue.

A package announces an event by adding it to the outbox in the same database
transaction as the change it describes (:func:`publish`), so an announcement is
never lost and never blocks the caller: if Redis is down, the event waits in the
database. :func:`relay` sends waiting events to the queue; the worker runs
:func:`dispatch`, which calls the handlers other packages :func:`subscribe`.
Delivery is at least once, and a handler that fails is retried; handlers must
be idempotent (they get the event id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, Retry
from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from telerad import clock
from telerad.db import Base, BigId

log = logging.getLogger(__name__)

QUEUE_NAME = "telerad-events"
#: A handler that fails is run again later; after the last try the job stays in rq's failed registry.
HANDLER_RETRY = Retry(max=6, interval=[10, 30, 60, 300, 900, 3600])
Handler = Callable[[int, str, dict[str, Any]], None]
_handlers: dict[str, list[Handler]] = {}


class OutboxEvent(Base):
    """An event waiting for (or already handed to) the job queue."""

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)


def publish(session: Session, topic: str, key: str, **payload: Any) -> OutboxEvent:
    """Add an event to the outbox within the caller's transaction."""
    event = OutboxEvent(topic=topic, key=key, payload=payload, created_at=clock.now())
    session.add(event)
    return event


def relay(sessions: sessionmaker, queue: Queue, batch: int = 200) -> int:
    """Hand waiting events to ``queue`` in order; returns how many were sent.

    Safe to run in several processes at once. If Redis fails, the events stay
    waiting and the error is logged; the next call tries again.
    """
    sent = 0
    with sessions() as session, session.begin():
        pending = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.sent_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for event in pending:
            try:
                queue.enqueue(
                    dispatch, event.id, event.topic, event.payload,
                    job_id=f"event-{event.id}", result_ttl=3600, failure_ttl=30 * 86400, retry=HANDLER_RETRY,
                )
            except RedisError as exc:
                log.warning("job queue unavailable, %d event(s) wait in the outbox: %s", len(pending) - sent, exc)
                break
            event.sent_at = clock.now()
            sent += 1
    return sent


def subscribe(topic: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``topic``: ``handler(event_id, topic, payload)``."""

    def register(handler: Handler) -> Handler:
        if handler not in _handlers.setdefault(topic, []):
            _handlers[topic].append(handler)
        return handler

    return register


def dispatch(event_id: int, topic: str, payload: dict[str, Any]) -> int:
    """The rq job: call every handler subscribed to ``topic``; returns how many ran."""
    handlers = _handlers.get(topic, [])
    for handler in handlers:
        handler(event_id, topic, payload)
    log.info("event %d %s handled by %d handler(s)", event_id, topic, len(handlers))
    return len(handlers)
