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
    clock = _Round(session, policy, notifier, at)
    with session.no_autoflush:
        for task in tasks:
            crossed = [name for name, when in milestones(policy, task) if when <= at]
            reminders = [name for name in crossed if name.startswith("reminder-")]
            if len(reminders) > task.reminders_sent and "escalation" not in crossed:
                clock.remind(task, len(reminders))
                result.reminded.append(task.id)
            task.reminders_sent = max(task.reminders_sent, len(reminders))
            if "escalation" in crossed and task.escalated_at is None:
                clock.escalate(task)
                result.escalated.append(task.id)
            if "breach" in crossed and task.breached_at is None:
                clock.breach(task)
                result.breached.append(task.id)
            task.next_check_at = next_milestone(policy, task)
    notifier.flush(session)
    return result


class _Round:
    """One sweep's actions, remembering who is eligible and who supervises (the same for many tasks)."""

    def __init__(self, session: Session, policy: ReadingSection, notifier: Notifier, at: datetime) -> None:
        self.session, self.policy, self.notifier, self.at = session, policy, notifier, at
        self._eligible: dict[tuple[int, str, str, str], list[User]] = {}
        self._supervisors: dict[int, list[User]] = {}

    def eligible(self, task: ReadingTask) -> list[User]:
        key = (task.centre_site_id, task.kind, task.modality, task.priority)
        if key not in self._eligible:
            self._eligible[key] = eligible(self.session, self.policy, task, self.at)
        return self._eligible[key]

    def supervisors(self, task: ReadingTask) -> list[User]:
        if task.centre_site_id not in self._supervisors:
            self._supervisors[task.centre_site_id] = list(
                self.session.scalars(
                    select(User).where(
                        User.site_id == task.centre_site_id, User.role == "supervisor", User.active.is_(True)
                    )
                )
            )
        return self._supervisors[task.centre_site_id]

    def people(self, task: ReadingTask) -> list[User]:
        """Who has the task: the holder, else the assignee, else every eligible reader, else the supervisors."""
        for user_id in (task.holder_id, task.assignee_id):
            if user_id is not None:
                return [self.session.get(User, user_id)]
        return self.eligible(task) or self.supervisors(task)

    def remind(self, task: ReadingTask, n: int) -> None:
        people = self.people(task)
        message = f"{task.priority} {task.modality} study {task.study_uid}: {_left(task, self.at)} left before its deadline"
        self.notifier.notify(self.session, people, task, "reminder", message, self.at)
        record(self.session, task, "reminded", "system", reminder=n, users=[user.name for user in people])

    def escalate(self, task: ReadingTask) -> None:
        task.escalated_at = self.at
        offered = [user for user in self.eligible(task) if user.id != task.holder_id]
        supervisors = self.supervisors(task)
        message = (
            f"ESCALATED {task.priority} {task.modality} study {task.study_uid}: {_left(task, self.at)} left, still unsigned"
        )
        self.notifier.notify(self.session, offered + supervisors, task, "escalation", message, self.at)
        record(
            self.session, task, "escalated", "system",
            offered=[user.name for user in offered], supervisors=[user.name for user in supervisors],
        )

    def breach(self, task: ReadingTask) -> None:
        task.breached_at = self.at
        if task.holder_id is not None:
            reason = f"claimed by {self.session.get(User, task.holder_id).name} but not signed in time"
        elif task.assignee_id is not None:
            reason = f"assigned to {self.session.get(User, task.assignee_id).name} but not claimed in time"
        elif not self.eligible(task):
            reason = "no qualified reader on duty"
        else:
            reason = "not claimed by any reader in time"
        task.breach_reason = reason
        message = f"BREACH {task.priority} {task.modality} study {task.study_uid}: {reason}"
        self.notifier.notify(self.session, self.supervisors(task), task, "breach", message, self.at)
        record(self.session, task, "breached", "system", reason=reason)


def _left(task: ReadingTask, at: datetime) -> str:
    minutes = int((task.due_at - at).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 0 else "overdue"
