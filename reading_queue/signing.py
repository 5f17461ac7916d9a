"""Closing a task when its report is signed (the reports package calls this)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from reading_queue.tasks import ReadingTask, TaskState, record
from telerad.users import User


def mark_signed(session: Session, task: ReadingTask, signer: User, at: datetime) -> None:
    """Record the signature: the task leaves the worklist and the service-level clock stops."""
    task.state, task.signed_at, task.signed_by_id, task.reader_id = TaskState.SIGNED, at, signer.id, signer.id
    task.holder_id, task.lease_until, task.next_check_at = None, None, None
    record(session, task, "signed", signer.name, within_deadline=at <= task.due_at)
