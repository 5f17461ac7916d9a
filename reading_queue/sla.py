"""The service-level clock: reminders, escalation and breaches of open tasks.

:func:`sweep` is the periodic job's body. Each task carries the time of its
next milestone (``next_check_at``), so a sweep touches only the tasks that
crossed one: at the reminder fractions the holder (or the assignee, or the
eligible readers when nobody has it, or the supervisors when nobody is
eligible) is reminded; at the escalation fraction
the task is offered to every eligible reader and shown to the supervisors; at
the deadline a breach is recorded with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reading_queue.assignment import eligible
from reading_queue.claims import expire_leases
from reading_queue.notify import Notifier
from reading_queue.tasks import ReadingTask, TaskState, milestones, next_milestone, record
from telerad.config import ReadingSection
from telerad.users import User


@dataclass
class SweepResult:
    """What one sweep did."""

    expired: list[int] = field(default_factory=list)
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    breached: list[int] = field(default_factory=list)


def sweep(session: Session, policy: ReadingSection, notifier: Notifier, at: datetime, batch: int = 5000) -> SweepResult:
    """Look at every task that crossed a milestone by ``at`` and act on it."""
    result = SweepResult(expired=expire_leases(session, at))
    tasks = session.scalars(
        select(ReadingTask)
        .where(ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)), ReadingTask.next_check_at <= at)
        .order_by(ReadingTask.next_check_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    for task in tasks:
        crossed = [name for name, when in milestones(policy, task) if when <= at]
        reminders = [name for name in crossed if name.startswith("reminder-")]
        if len(reminders) > task.reminders_sent and "escalation" not in crossed:
            _remind(session, policy, notifier, task, at, len(reminders))
            result.reminded.append(task.id)
        task.reminders_sent = max(task.reminders_sent, len(reminders))
        if "escalation" in crossed and task.escalated_at is None:
            _escalate(session, policy, notifier, task, at)
            result.escalated.append(task.id)
        if "breach" in crossed and task.breached_at is None:
            _breach(session, policy, notifier, task, at)
            result.breached.append(task.id)
        task.next_check_at = next_milestone(policy, task)
    return result


def _people(session: Session, policy: ReadingSection, task: ReadingTask, at: datetime) -> list[User]:
    """Who has the task: the holder, else the assignee, else every eligible reader."""
    for user_id in (task.holder_id, task.assignee_id):
        if user_id is not None:
            return [session.get(User, user_id)]
    return eligible(session, policy, task, at)


def _supervisors(session: Session, task: ReadingTask) -> list[User]:
    return list(
        session.scalars(
            select(User).where(User.site_id == task.centre_site_id, User.role == "supervisor", User.active.is_(True))
        )
    )


def _left(task: ReadingTask, at: datetime) -> str:
    minutes = int((task.due_at - at).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 0 else "overdue"


def _remind(session: Session, policy: ReadingSection, notifier: Notifier, task: ReadingTask, at: datetime, n: int) -> None:
    people = _people(session, policy, task, at) or _supervisors(session, task)
    message = f"{task.priority} {task.modality} study {task.study_uid}: {_left(task, at)} left before its deadline"
    notifier.notify(session, people, task, "reminder", message, at)
    record(session, task, "reminded", "system", reminder=n, users=[user.name for user in people])


def _escalate(session: Session, policy: ReadingSection, notifier: Notifier, task: ReadingTask, at: datetime) -> None:
    task.escalated_at = at
    offered = [user for user in eligible(session, policy, task, at) if user.id != task.holder_id]
    supervisors = _supervisors(session, task)
    message = f"ESCALATED {task.priority} {task.modality} study {task.study_uid}: {_left(task, at)} left, still unsigned"
    notifier.notify(session, offered + supervisors, task, "escalation", message, at)
    record(
        session, task, "escalated", "system",
        offered=[user.name for user in offered], supervisors=[user.name for user in supervisors],
    )


def _breach(session: Session, policy: ReadingSection, notifier: Notifier, task: ReadingTask, at: datetime) -> None:
    task.breached_at = at
    if task.holder_id is not None:
        reason = f"claimed by {session.get(User, task.holder_id).name} but not signed in time"
    elif task.assignee_id is not None:
        reason = f"assigned to {session.get(User, task.assignee_id).name} but not claimed in time"
    elif not eligible(session, policy, task, at):
        reason = "no qualified reader on duty"
    else:
        reason = "not claimed by any reader in time"
    task.breach_reason = reason
    message = f"BREACH {task.priority} {task.modality} study {task.study_uid}: {reason}"
    notifier.notify(session, _supervisors(session, task), task, "breach", message, at)
    record(session, task, "breached", "system", reason=reason)
