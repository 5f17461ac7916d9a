"""Telling people: in-app notices shown in the worklist, and a webhook for SMS or WeChat gateways.

A :class:`Notifier` only writes rows in the caller's transaction, so the
service-level clock never waits on the network. Webhook deliveries are sent by
:func:`deliver_webhooks` (a job), retried with growing pauses, and record why
they failed.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.request
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import JSON, ForeignKey, String, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from reading_queue.tasks import ReadingTask
from telerad.db import Base, BigId
from telerad.users import User

log = logging.getLogger(__name__)
RETRY_MINUTES = (1, 5, 15, 60, 240)


class Notification(Base):
    """An in-app notice for one user about one task (reminder, escalation, breach)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("reading_tasks.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """A notice waiting to be posted to the webhook, or posted, or given up on."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(400))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(400))


class Notifier(Protocol):
    """Something that tells ``users`` about ``task``.

    ``notify`` may gather notices; ``flush`` writes what was gathered in
    ``session`` and must be called before the transaction commits.
    """

    def notify(self, session: Session, users: list[User], task: ReadingTask, kind: str, message: str, at: datetime) -> None:
        """Record the notice; delivery must not block the caller."""

    def flush(self, session: Session) -> None:
        """Write the notices gathered in ``session``."""


_GATHERED = "telerad.in_app_notices"


class InAppNotifier:
    """Notices shown in the worklist of each user, written in one statement per transaction."""

    def notify(self, session: Session, users: list[User], task: ReadingTask, kind: str, message: str, at: datetime) -> None:
        """Gather one notification per user."""
        session.info.setdefault(_GATHERED, []).extend(
            {"user_id": u.id, "task_id": task.id, "kind": kind, "message": message, "created_at": at} for u in users
        )

    def flush(self, session: Session) -> None:
        """Insert every gathered notification at once."""
        gathered = session.info.pop(_GATHERED, [])
        if gathered:
            session.execute(insert(Notification), gathered)


class WebhookNotifier:
    """Notices posted as JSON to a gateway URL (delivered by :func:`deliver_webhooks`)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def notify(self, session: Session, users: list[User], task: ReadingTask, kind: str, message: str, at: datetime) -> None:
        """Queue one delivery naming every recipient."""
        payload = {
            "kind": kind,
            "message": message,
            "task_id": task.id,
            "study_uid": task.study_uid,
            "priority": task.priority,
            "due_at": task.due_at.isoformat(),
            "recipients": [user.name for user in users],
        }
        session.add(WebhookDelivery(url=self.url, payload=payload, attempts=0, next_attempt_at=at))

    def flush(self, session: Session) -> None:
        """Nothing gathered: deliveries are rows the session writes."""


class Notifiers:
    """Several notifiers as one."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = notifiers

    def notify(self, session: Session, users: list[User], task: ReadingTask, kind: str, message: str, at: datetime) -> None:
        """Tell every notifier."""
        for notifier in self.notifiers:
            notifier.notify(session, users, task, kind, message, at)

    def flush(self, session: Session) -> None:
        """Flush every notifier."""
        for notifier in self.notifiers:
            notifier.flush(session)


def configured_notifier(webhook_url: str) -> Notifiers:
    """In-app notices, and the webhook gateway too when ``webhook_url`` is set (``reading.webhook_url``)."""
    notifiers: list[Notifier] = [InAppNotifier()]
    if webhook_url:
        notifiers.append(WebhookNotifier(webhook_url))
    return Notifiers(*notifiers)


def deliver_webhooks(sessions: sessionmaker, at: datetime, timeout: float = 5.0, batch: int = 50) -> int:
    """Post due webhook deliveries; failures are retried later (1, 5, 15, 60, 240 minutes). Returns posted.

    Deliveries are taken in one short transaction (pushed back by a lease, so
    no two workers post the same one) and posted outside it: a slow gateway
    never holds the database.
    """
    with sessions() as session, session.begin():
        due = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.next_attempt_at <= at)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for delivery in due:
            delivery.next_attempt_at = at + timedelta(minutes=RETRY_MINUTES[0])
        taken = [(delivery.id, delivery.url, delivery.payload) for delivery in due]
    posted = 0
    for delivery_id, url, payload in taken:
        error = _post(url, payload, timeout)
        with sessions() as session, session.begin():
            delivery = session.get(WebhookDelivery, delivery_id)
            delivery.attempts += 1
            if error is None:
                delivery.delivered_at, delivery.next_attempt_at, delivery.last_error = at, None, None
                posted += 1
                continue
            delivery.last_error = error[:400]
            retry = RETRY_MINUTES[delivery.attempts - 1] if delivery.attempts <= len(RETRY_MINUTES) else None
            delivery.next_attempt_at = at + timedelta(minutes=retry) if retry else None
            log.warning("webhook delivery %d failed (attempt %d): %s", delivery_id, delivery.attempts, error)
    return posted


def _post(url: str, payload: dict[str, Any], timeout: float) -> str | None:
    """POST ``payload`` as JSON; the error, or ``None`` on a 2xx answer."""
    try:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured gateway
            response.read()
    except OSError as exc:
        return str(exc)
    except (http.client.HTTPException, ValueError) as exc:  # not HTTP at all, or not a usable URL
        return f"{type(exc).__name__}: {exc}"
    return None
