"""Claims: a reader takes a task for a while (a lease), renews it while active, releases it.

Claiming is one conditional UPDATE, so when two readers claim at the same
moment — threads or processes, SQLite or PostgreSQL — exactly one wins.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from reading_queue.access import may_claim
from reading_queue.tasks import ReadingTask, TaskState, record
from telerad.config import ReadingSection
from telerad.users import User


class ClaimError(Exception):
    """A claim or release was refused; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def claim(session: Session, policy: ReadingSection, task_id: int, user: User, at: datetime) -> ReadingTask:
    """Claim (or renew) ``task_id`` for ``user`` until ``lease_minutes`` from ``at``."""
    task = session.get(ReadingTask, task_id)
    if task is None:
        raise ClaimError(404, f"no task {task_id}")
    if not may_claim(session, policy, user, task, at):
        raise ClaimError(403, "you are not qualified for, or not offered, this task")
    lapsed_holder = task.holder_id if task.lease_until is not None and task.lease_until <= at else None
    renewing = task.holder_id == user.id and lapsed_holder is None
    lease_until = at + timedelta(minutes=policy.lease_minutes)
    won = session.execute(
        update(ReadingTask)
        .where(
            ReadingTask.id == task_id,
            ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)),
            or_(ReadingTask.holder_id.is_(None), ReadingTask.holder_id == user.id, ReadingTask.lease_until <= at),
        )
        .values(holder_id=user.id, lease_until=lease_until, state=TaskState.CLAIMED)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(task)
    if won != 1:
        holder = session.get(User, task.holder_id) if task.holder_id else None
        if holder is not None:
            raise ClaimError(409, f"already claimed by {holder.display_name or holder.name} until {task.lease_until:%H:%M} UTC")
        raise ClaimError(409, f"the task is {task.state}")
    if lapsed_holder is not None:
        record(session, task, "released", "system", reason="lease expired", holder_id=lapsed_holder)
    task.reader_id = user.id
    record(session, task, "renewed" if renewing else "claimed", user.name, lease_until=lease_until.isoformat())
    return task


def release(session: Session, task_id: int, user: User, reason: str = "released by the reader") -> ReadingTask:
    """Give a claimed task back to the worklist."""
    released = session.execute(
        update(ReadingTask)
        .where(ReadingTask.id == task_id, ReadingTask.holder_id == user.id, ReadingTask.state == TaskState.CLAIMED)
        .values(holder_id=None, lease_until=None, state=TaskState.OPEN)
        .execution_options(synchronize_session=False)
    ).rowcount
    task = session.get(ReadingTask, task_id)
    if task is None:
        raise ClaimError(404, f"no task {task_id}")
    session.refresh(task)
    if released != 1:
        raise ClaimError(409, "you do not hold this task")
    record(session, task, "released", user.name, reason=reason)
    return task


def expire_leases(session: Session, at: datetime) -> list[int]:
    """Release every claim whose lease has run out; returns the task ids."""
    expired = session.scalars(
        select(ReadingTask).where(ReadingTask.state == TaskState.CLAIMED, ReadingTask.lease_until <= at)
    ).all()
    for task in expired:
        holder = task.holder_id
        task.holder_id, task.lease_until, task.state = None, None, TaskState.OPEN
        record(session, task, "released", "system", reason="lease expired", holder_id=holder)
    return [task.id for task in expired]
