"""What a county supervisor does to a task: reassign it to another reader, or change its priority.

Both are recorded on the task's timeline with the supervisor's reason, and the reader who gets the work is
told. Who may do them is asked of :func:`reading_queue.access.may_supervise`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from reading_queue.access import may_supervise
from reading_queue.assignment import qualified
from reading_queue.notify import Notifier
from reading_queue.tasks import PRIORITIES, ReadingTask, TaskState, due, next_milestone, record
from telerad.config import ReadingSection
from telerad.users import User

RUNNING = (TaskState.OPEN, TaskState.CLAIMED)


class SupervisionError(Exception):
    """A supervisor's action was refused; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status, self.parameter = status, parameter


def _check(session: Session, supervisor: User, task: ReadingTask, reason: str) -> str:
    """The stripped reason, once the supervisor may act on the running ``task``."""
    if not may_supervise(session, supervisor, task):
        raise SupervisionError(403, "only a supervisor of the task's centre may do this")
    if task.state not in RUNNING:
        raise SupervisionError(409, f"the task is {task.state}")
    if not reason.strip():
        raise SupervisionError(400, "reason: say why, for the record", "reason")
    return reason.strip()


def reassign(
    session: Session, notifier: Notifier, task: ReadingTask, supervisor: User, reader: User, reason: str, at: datetime
) -> None:
    """Give ``task`` to ``reader`` (qualified at its centre): the holder's claim ends and ``reader`` is told."""
    reason = _check(session, supervisor, task, reason)
    if reader.id not in {user.id for user in qualified(session, task)}:
        raise SupervisionError(400, f"user: {reader.name} is not an active reader of this centre for {task.modality}", "user")
    if reader.id in (task.holder_id, task.assignee_id) and task.holder_id in (None, reader.id):
        raise SupervisionError(409, f"the task is already with {reader.name}")
    previous = task.holder_id or task.assignee_id
    task.holder_id, task.lease_until, task.state = None, None, TaskState.OPEN
    task.assignee_id = task.reader_id = reader.id
    record(session, task, "reassigned", supervisor.name, user=reader.name, previous_user_id=previous, reason=reason)
    message = f"{task.priority} {task.modality} study {task.study_uid} was given to you by {supervisor.name}: {reason}"
    notifier.notify(session, [reader], task, "reassigned", message, at)


def reprioritise(
    session: Session, policy: ReadingSection, task: ReadingTask, priority: str, actor: str, reason: str, source: str
) -> None:
    """Give ``task`` a new priority: a new deadline from its completion and a new next service-level check."""
    if priority not in PRIORITIES:
        raise SupervisionError(400, f"priority: expected one of {', '.join(PRIORITIES)}", "priority")
    previous = task.priority
    task.priority, task.priority_source = priority, source
    task.due_at = due(policy, task.kind, priority, task.opened_at)
    task.next_check_at = next_milestone(policy, task)
    record(session, task, "priority_changed", actor, previous=previous, priority=priority,
           due_at=task.due_at.isoformat(), reason=reason)


def change_priority(
    session: Session, policy: ReadingSection, task: ReadingTask, supervisor: User, priority: str, reason: str
) -> None:
    """A supervisor's change of priority, with the reason recorded."""
    reason = _check(session, supervisor, task, reason)
    if priority == task.priority:
        raise SupervisionError(409, f"the task is already {priority}")
    reprioritise(session, policy, task, priority, supervisor.name, reason, "supervisor")
