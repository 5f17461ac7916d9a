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


def on_duty(session: Session, policy: ReadingSection, users: list[User], at: datetime) -> set[int]:
    """The ids of ``users`` on duty at ``at``: a supervisor's shift wins over the weekly roster.

    A reader with no weekly roster at all is taken as always on duty. One query for all of them.
    """
    overrides: dict[int, bool] = {}
    if users:
        rows = session.execute(
            select(DutyShift.user_id, DutyShift.on_duty)
            .where(DutyShift.user_id.in_([user.id for user in users]), DutyShift.starts_at <= at, DutyShift.ends_at > at)
            .order_by(DutyShift.id)
        ).all()
        overrides = {user_id: flag for user_id, flag in rows}  # the latest shift wins
    return {
        user.id
        for user in users
        if overrides.get(user.id, _rostered(policy, user.name, at))
    }


def _rostered(policy: ReadingSection, name: str, at: datetime) -> bool:
    """Whether the weekly roster has ``name`` on duty at ``at`` (always, if the roster never names them)."""
    shifts = [shift for shift in policy.duty if shift.user == name]
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
    candidates = qualified(session, task)
    present = on_duty(session, policy, candidates, at)
    readers = [user for user in candidates if user.id in present]
    for rule in policy.routing:
        if rule.modality in (None, task.modality) and rule.priority in (None, task.priority):
            general = [user for user in readers if not user.expert]
            if rule.readers == "general" and general:
                return general
            break
    return readers


def weighted_load(session: Session, user_ids: list[int], at: datetime) -> dict[int, tuple[float, int]]:
    """Each reader's open work as (weight, count): one per task, 2 if due within 4 hours, 4 within 1."""
    if not user_ids:
        return {}
    owner = func.coalesce(ReadingTask.holder_id, ReadingTask.assignee_id)
    weight = case(
        (ReadingTask.due_at <= at + timedelta(hours=1), 4.0),
        (ReadingTask.due_at <= at + timedelta(hours=4), 2.0),
        else_=1.0,
    )
    rows = session.execute(
        select(owner, func.sum(weight), func.count())
        .where(owner.in_(user_ids), ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)))
        .group_by(owner)
    ).all()
    load = dict.fromkeys(user_ids, (0.0, 0))
    load.update({user_id: (float(total), count) for user_id, total, count in rows})
    return load


def pick(session: Session, policy: ReadingSection, task: ReadingTask, at: datetime) -> User | None:
    """The eligible reader with the least weighted work (ties: fewest tasks, then name)."""
    readers = eligible(session, policy, task, at)
    load = weighted_load(session, [user.id for user in readers], at)
    return min(readers, key=lambda user: (*load[user.id], user.name), default=None)


def route(session: Session, policy: ReadingSection, task: ReadingTask, centre_code: str, at: datetime) -> None:
    """Assign (push) or offer (pull) a new task, recording what happened on its timeline."""
    if mode_of(policy, centre_code) == "push":
        chosen = pick(session, policy, task, at)
        if chosen is not None:
            task.assignee_id = task.reader_id = chosen.id
            record(session, task, "assigned", "system", user=chosen.name, mode="push")
            return
    offered = [user.name for user in eligible(session, policy, task, at)]
    record(session, task, "offered", "system", users=offered, mode=mode_of(policy, centre_code))
