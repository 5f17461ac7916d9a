"""Who may see and act on which task: the one place every entry point asks.

- a station sees the tasks of studies it (or a site below it) sent;
- a reader sees open tasks of their centre for modalities they read, and what they hold;
- a consultant the same at the province, consults included;
- a supervisor and an administrator see everything of their centre and the sites below it.
- a study's report is written by the reader holding its reading task or the consultant holding a consult on it,
  countersigned by an expert of the modality at or above the centre, read by a station only once signed for good,
  and its critical finding acknowledged by the station.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, column, exists, false, or_, select, table
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue.assignment import eligible
from reading_queue.tasks import ReadingTask, TaskState
from telerad.config import ReadingSection
from telerad.sites import subtree_ids
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

    Qualified readers of the centre on duty may claim a task nobody was given;
    a task given to a reader (by push mode or a supervisor's reassignment) only
    that reader may claim, until it is escalated and everyone eligible may.
    """
    if task.holder_id == user.id:
        return True
    if user.id not in {reader.id for reader in eligible(session, policy, task, at)} and task.assignee_id != user.id:
        return False
    if task.assignee_id not in (None, user.id):
        return task.escalated_at is not None
    return True


#: The peer reviews (a table of the reports package, named here so this package needs nothing of it).
_peer_reviews = table("peer_reviews", column("task_id"), column("reviewer_id"))


def visible_studies(session: Session, user: User) -> ColumnElement[bool]:
    """A filter on :class:`Study` for the studies ``user`` sees: stations, supervisors and administrators
    those sent by their site or below, even before a task exists; everyone also those of a task they may see;
    a reader or consultant also the studies whose report they were given to peer review."""
    through_task = exists().where(ReadingTask.study_pk == Study.id, visible_tasks(session, user))
    if user.role in ("station", "supervisor", "admin"):
        return or_(Study.site_id.in_(subtree_ids(session, user.site_id)), through_task)
    reviewing = exists().where(
        _peer_reviews.c.reviewer_id == user.id, _peer_reviews.c.task_id == ReadingTask.id,
        ReadingTask.study_pk == Study.id,
    )
    return or_(through_task, reviewing)


def may_see_study(session: Session, user: User, study: Study) -> bool:
    """Whether ``user`` sees ``study`` (:func:`visible_studies`)."""
    return session.scalar(select(Study.id).where(Study.id == study.id, visible_studies(session, user))) is not None


def sees_only_own_figures(user: User) -> bool:
    """Readers and consultants see their own turnaround figures only."""
    return user.role in ("reader", "consultant")


def may_supervise(session: Session, user: User, task: ReadingTask) -> bool:
    """Whether ``user`` supervises the centre reading ``task`` (or a centre above it): reassign, reprioritise."""
    return user.role in ("supervisor", "admin") and task.centre_site_id in subtree_ids(session, user.site_id)


def may_set_duty(session: Session, supervisor: User, reader: User) -> bool:
    """Whether ``supervisor`` may change the roster of ``reader`` (a reader of their centre or below)."""
    return (
        supervisor.role in ("supervisor", "admin")
        and reader.role in ("reader", "consultant")
        and reader.site_id in subtree_ids(session, supervisor.site_id)
    )



# --- reports (the reports package asks these; it passes plain values, as it sits above this package) ------------


def writing_task(session: Session, user: User, study_pk: int, at: datetime) -> ReadingTask | None:
    """The task through which ``user`` may write a study's report now: the reading task they hold, else a consult
    on the study they hold. A claim whose lease has run out is not held."""
    return session.scalar(
        select(ReadingTask)
        .where(
            ReadingTask.study_pk == study_pk,
            ReadingTask.holder_id == user.id,
            ReadingTask.state == TaskState.CLAIMED,
            or_(ReadingTask.lease_until.is_(None), ReadingTask.lease_until > at),
        )
        .order_by(ReadingTask.kind.desc(), ReadingTask.id)  # "read" before "consult"
        .limit(1)
    )


def may_countersign(session: Session, user: User, task: ReadingTask, author_id: int | None) -> bool:
    """Whether ``user`` may countersign (or amend) the report of ``task``: an active expert reader or consultant
    qualified for its modality, at its reading centre or a centre above it, who is not the report's author."""
    return (
        user.active
        and user.expert
        and user.role in ("reader", "consultant")
        and user.id != author_id
        and task.modality in user.modalities
        and task.centre_site_id in subtree_ids(session, user.site_id)
    )


def countersigners(session: Session, task: ReadingTask, author_id: int | None) -> list[User]:
    """Everyone who may countersign the report of ``task`` (:func:`may_countersign`)."""
    candidates = session.scalars(
        select(User).where(User.expert.is_(True), User.active.is_(True), User.role.in_(("reader", "consultant")))
    ).all()
    return [user for user in candidates if may_countersign(session, user, task, author_id)]


def may_read_report(session: Session, user: User, study: Study, state: str) -> bool:
    """Whether ``user`` may read a study's report in ``state``: whoever sees the study, except that a station
    reads it only once it is signed for good (``final`` or ``amended``), never a draft or a preliminary one."""
    if not may_see_study(session, user, study):
        return False
    return user.role != "station" or state in ("final", "amended")


def may_acknowledge_critical(session: Session, user: User, study: Study) -> bool:
    """Whether ``user`` may acknowledge a critical finding in a study's report: staff of a station that sees it."""
    return user.role == "station" and may_see_study(session, user, study)
