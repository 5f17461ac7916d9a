"""Who may see and act on which task: the one place every entry point asks.

- a station sees the tasks of studies it (or a site below it) sent;
- a reader sees open tasks of their centre for modalities they read, and what they hold;
- a consultant the same at the province, consults included;
- a supervisor and an administrator see everything of their centre and the sites below it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, false, or_, select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue.assignment import eligible, mode_of
from reading_queue.tasks import ReadingTask
from telerad.config import ReadingSection
from telerad.sites import Site, subtree_ids
from telerad.users import User


def visible_tasks(session: Session, user: User) -> ColumnElement[bool]:
    """A filter on :class:`ReadingTask` for the tasks ``user`` may see."""
    if user.role in ("supervisor", "admin"):
        sites = subtree_ids(session, user.site_id)
        return or_(ReadingTask.centre_site_id.in_(sites), ReadingTask.source_site_id.in_(sites))
    if user.role == "station":
        return ReadingTask.source_site_id.in_(subtree_ids(session, user.site_id))
    if user.role in ("reader", "consultant") and user.modalities:
        kinds = ("read", "consult") if user.role == "consultant" else ("read",)
        return or_(
            and_(
                ReadingTask.centre_site_id == user.site_id,
                ReadingTask.kind.in_(kinds),
                ReadingTask.modality.in_(user.modalities),
            ),
            ReadingTask.holder_id == user.id,
        )
    return false()


def may_claim(session: Session, policy: ReadingSection, user: User, task: ReadingTask, at: datetime) -> bool:
    """Whether ``user`` may claim ``task`` now.

    Qualified readers of the centre may claim in pull mode; in push mode the
    assignee may, and everyone eligible once the task is escalated or has no
    assignee.
    """
    if task.holder_id == user.id:
        return True
    if user.id not in {reader.id for reader in eligible(session, policy, task, at)} and task.assignee_id != user.id:
        return False
    centre = session.get(Site, task.centre_site_id)
    if mode_of(policy, centre.code) == "push" and task.assignee_id not in (None, user.id):
        return task.escalated_at is not None
    return True


def visible_studies(session: Session, user: User) -> ColumnElement[bool]:
    """A filter on :class:`Study` for the studies ``user`` sees: stations, supervisors and administrators
    those sent by their site or below, even before a task exists; everyone also those of a task they may see."""
    through_task = exists().where(ReadingTask.study_pk == Study.id, visible_tasks(session, user))
    if user.role in ("station", "supervisor", "admin"):
        return or_(Study.site_id.in_(subtree_ids(session, user.site_id)), through_task)
    return through_task


def may_see_study(session: Session, user: User, study: Study) -> bool:
    """Whether ``user`` sees ``study`` (:func:`visible_studies`)."""
    return session.scalar(select(Study.id).where(Study.id == study.id, visible_studies(session, user))) is not None


def sees_only_own_figures(user: User) -> bool:
    """Readers and consultants see their own turnaround figures only."""
    return user.role in ("reader", "consultant")


def may_set_duty(session: Session, supervisor: User, reader: User) -> bool:
    """Whether ``supervisor`` may change the roster of ``reader`` (a reader of their centre or below)."""
    return (
        supervisor.role in ("supervisor", "admin")
        and reader.role in ("reader", "consultant")
        and reader.site_id in subtree_ids(session, supervisor.site_id)
    )

