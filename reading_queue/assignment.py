"""Who may read a task, who is on duty, and who gets it in push mode.

A task is offered to readers who are qualified for its modality, belong to the
centre that covers the sending site, and are on duty. Routing rules keep
simple repeat work away from experts. In push mode the task goes to the
eligible reader with the least weighted open work, where work due soon weighs
more.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ForeignKey, String, case, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from reading_queue.tasks import ReadingTask, TaskState, record
from telerad.config import ReadingSection
from telerad.db import Base
from telerad.users import User

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DutyShift(Base):
    """A supervisor's change to the roster: a reader on (or off) duty for a period."""

    __tablename__ = "duty_shifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    on_duty: Mapped[bool]
    set_by: Mapped[str] = mapped_column(String(64))


def mode_of(policy: ReadingSection, centre_code: str) -> str:
    """``push`` or ``pull`` for a centre (pull unless configured)."""
    return next((centre.mode for centre in policy.centres if centre.site == centre_code), "pull")


def on_duty(session: Session, policy: ReadingSection, user: User, at: datetime) -> bool:
    """Whether ``user`` is on duty at ``at``: a supervisor's shift wins over the weekly roster.

    A reader with no weekly roster at all is taken as always on duty.
    """
    override = session.scalar(
        select(DutyShift.on_duty)
        .where(DutyShift.user_id == user.id, DutyShift.starts_at <= at, DutyShift.ends_at > at)
        .order_by(DutyShift.id.desc())
    )
    if override is not None:
        return override
    shifts = [shift for shift in policy.duty if shift.user == user.name]
    if not shifts:
        return True
    local = at.astimezone(ZoneInfo(policy.timezone))
    day, yesterday, now = _WEEKDAYS[local.weekday()], _WEEKDAYS[local.weekday() - 1], local.time()
    for shift in shifts:
        start = time.fromisoformat(shift.start)
        end = time.max if shift.end == "24:00" else time.fromisoformat(shift.end)
        if start < end and day in shift.days and start <= now < end:
            return True
        # A night shift (e.g. 20:00-08:00) belongs to the day it starts on.
        if start >= end and ((day in shift.days and now >= start) or (yesterday in shift.days and now < end)):
            return True
    return False


def qualified(session: Session, task: ReadingTask) -> list[User]:
    """Active readers of the task's centre qualified for its modality (only consultants answer consults)."""
    roles = ("consultant",) if task.kind == "consult" else ("reader", "consultant")
    users = session.scalars(
        select(User)
        .where(User.site_id == task.centre_site_id, User.role.in_(roles), User.active.is_(True))
        .order_by(User.name)
    ).all()
    return [user for user in users if task.modality in user.modalities]


def eligible(session: Session, policy: ReadingSection, task: ReadingTask, at: datetime) -> list[User]:
    """Qualified readers on duty, with experts set aside for work the routing rules call simple."""
    readers = [user for user in qualified(session, task) if on_duty(session, policy, user, at)]
    for rule in policy.routing:
        if rule.modality in (None, task.modality) and rule.priority in (None, task.priority):
            general = [user for user in readers if not user.expert]
            if rule.readers == "general" and general:
                return general
            break
    return readers


def weighted_load(session: Session, user_ids: list[int], at: datetime) -> dict[int, float]:
    """Each reader's open work: one per task, more for tasks due within 4 hours and more again within 1."""
    if not user_ids:
        return {}
    holder = func.coalesce(ReadingTask.holder_id, ReadingTask.assignee_id)
    weight = case(
        (ReadingTask.due_at <= at + timedelta(hours=1), 4.0),
        (ReadingTask.due_at <= at + timedelta(hours=4), 2.0),
        else_=1.0,
    )
    rows = session.execute(
        select(holder, func.sum(weight))
        .where(ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)), holder.in_(user_ids))
        .group_by(holder)
    ).all()
    load = dict.fromkeys(user_ids, 0.0)
    load.update({user_id: float(total) for user_id, total in rows})
    return load


def pick(session: Session, policy: ReadingSection, task: ReadingTask, at: datetime) -> User | None:
    """The eligible reader with the least weighted work (ties: fewest tasks, then name)."""
    readers = eligible(session, policy, task, at)
    load = weighted_load(session, [user.id for user in readers], at)
    holder = func.coalesce(ReadingTask.holder_id, ReadingTask.assignee_id)
    count = dict(
        session.execute(
            select(holder, func.count())
            .where(ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)), holder.in_([user.id for user in readers]))
            .group_by(holder)
        ).all()
    )
    return min(readers, key=lambda user: (load[user.id], count.get(user.id, 0), user.name), default=None)


def route(session: Session, policy: ReadingSection, task: ReadingTask, centre_code: str, at: datetime) -> None:
    """Assign (push) or offer (pull) a new task, recording what happened on its timeline."""
    if mode_of(policy, centre_code) == "push":
        chosen = pick(session, policy, task, at)
        if chosen is not None:
            task.assignee_id = chosen.id
            record(session, task, "assigned", "system", user=chosen.name, mode="push")
            return
    offered = [user.name for user in eligible(session, policy, task, at)]
    record(session, task, "offered", "system", users=offered, mode=mode_of(policy, centre_code))
