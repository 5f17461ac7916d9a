"""The audit trail: who did what, to which object, and when.

Append-only. Every package records here; nothing updates or deletes a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from telerad import clock
from telerad.db import Base, BigId


class AuditEvent(Base):
    """One recorded action."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record(session: Session, actor: str, action: str, object_type: str, object_id: str, **detail: Any) -> AuditEvent:
    """Add an audit event to ``session`` (it is written when the session commits)."""
    event = AuditEvent(
        at=clock.now(), actor=actor, action=action, object_type=object_type, object_id=object_id, detail=detail
    )
    session.add(event)
    return event
