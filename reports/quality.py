"""Quality control (质控): peer review of a random sample of final reports.

When a report first becomes final (``report.signed`` for its author's signature or a countersignature; never
for a co-signature or an addendum) :func:`sample` draws it for review with probability
``quality.sample_share``, or ``quality.new_reader_share`` while its author signed their first report less than
``quality.new_reader_days`` before. The draw is a keyed hash of the report's id (:func:`drawn`, the key made
once per data directory by :func:`sampling_key`), so a repeated event always gets the same answer, and a report
has at most one :class:`PeerReview` (a unique row, taken under the report's lock).

The reviewer is an active reader or consultant qualified for the modality at the report's centre or a centre
above it who has not signed the report, with the fewest pending reviews (ties by name); without one the review
waits unassigned and the centre's supervisors are told. The reviewer scores the report on a RADPEER-like scale
(:class:`Score`: 1 agree, 2 minor, 3 significant discrepancy) with a comment, required for a discrepancy. A
significant discrepancy is told to the supervisors and the author, who (or an expert who may amend, as for any
addendum) may start an addendum from the review (:func:`start_addendum`): a draft citing the review, signed
through :func:`reports.drafting.add_addendum` like every addendum. Supervisors reassign or cancel a pending
review.

A review's states are kept here (:class:`ReviewState`): ``pending`` → ``done`` (scored) or ``cancelled`` (by
a supervisor); only a pending review is scored, reassigned or cancelled. Every step is in the audit trail and on
the reading task's timeline; the callers flush their notifier before committing.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, ForeignKey, Index, String, Text, and_, exists, false, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pacs_node.index import Study
from reading_queue import access
from reading_queue.notify import Notifier
from reading_queue.tasks import ReadingTask, record
from reports.critical import supervisors
from reports.drafting import SIGNED_FOR_GOOD, read_task
from reports.models import Report, ReportAddendum, ReportSignature
from telerad import audit
from telerad.config import Config, QualitySection
from telerad.db import Base, BigId
from telerad.problems import Problem
from telerad.sites import Site, subtree_ids
from telerad.users import User

KEY_FILE = "peer-review.key"
REVIEWING_ROLES = ("reader", "consultant")
#: The signatures that make a report final for the first time (an addendum's has an ``addendum_id``).
FINALISING_ROLES = ("author", "countersign")
COMMENT_LIMIT = 4000
ADDENDUM_CITATION = "依据质控复核第 {id} 号意见（重大差异）补充 / Addendum after peer review no. {id} (significant discrepancy): "


class ReviewState(enum.StrEnum):
    """Where a peer review is. A review leaves ``pending`` once, for good: scored or withdrawn."""

    PENDING = "pending"  # waiting for its reviewer (or, unassigned, for a supervisor to find one)
    DONE = "done"  # scored
    CANCELLED = "cancelled"  # withdrawn by a supervisor


class Score(enum.StrEnum):
    """A RADPEER-like score, stored as its code."""

    AGREE = "agree"  # 1: concur with the interpretation
    MINOR = "minor"  # 2: a discrepancy unlikely to matter clinically
    SIGNIFICANT = "significant"  # 3: a discrepancy likely to matter clinically


#: The RADPEER number of each score.
RADPEER = {Score.AGREE: 1, Score.MINOR: 2, Score.SIGNIFICANT: 3}
SCORES = tuple(score.value for score in Score)


class PeerReview(Base):
    """One final report drawn for peer review, its reviewer, score and comment, and an addendum started from it."""

    __tablename__ = "peer_reviews"
    __table_args__ = (Index("ix_peer_reviews_reviewer_state", "reviewer_id", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("reading_tasks.id"), index=True)
    new_reader: Mapped[bool]  # drawn at the new readers' share
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.PENDING)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    score: Mapped[str | None] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    assigned_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None] = mapped_column(index=True)
    addendum_draft: Mapped[str | None] = mapped_column(Text)  # the addendum as started from the review
    addendum_started_at: Mapped[datetime | None]
    addendum_started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class ReviewError(Problem):
    """A peer-review action refused: ``status`` is the HTTP status, ``parameter`` (400) the input at fault."""

    @classmethod
    def bad(cls, name: str, reason: str) -> ReviewError:
        """A 400 naming the input ``name`` and what is wrong with it."""
        return cls(400, f"{name}: {reason}", parameter=name)


# --- the draw ---------------------------------------------------------------------------------------------------


def sampling_key(data_dir: Path) -> bytes:
    """The secret the draw is keyed with: made once per data directory, shared by every worker.

    A new key is written to a file of its own and linked into place, so two processes making it at once both
    end up with the one that won.
    """
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = data_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(fresh, path)
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return bytes.fromhex(path.read_text().strip())


def drawn(key: bytes, report_id: int, share: float) -> bool:
    """Whether the report is drawn at ``share``: the HMAC-SHA256 of its id, read as a number in [0, 1), is below
    ``share`` — never at 0, always at 1, the same answer every time."""
    digest = hmac.new(key, f"report:{report_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def new_reader(session: Session, policy: QualitySection, author_id: int, at: datetime) -> bool:
    """Whether the author signed their first report less than ``new_reader_days`` before ``at``."""
    first = session.scalar(
        select(func.min(ReportSignature.signed_at))
        .where(ReportSignature.signer_id == author_id, ReportSignature.role == "author",
               ReportSignature.addendum_id.is_(None))
    )
    return first is not None and at - first < timedelta(days=policy.new_reader_days)


# --- reviewers --------------------------------------------------------------------------------------------------


def _centre_and_above(session: Session, site_id: int) -> list[int]:
    """The ids of the site and of every site above it in the alliance tree."""
    found: list[int] = []
    site = session.get(Site, site_id)
    while site is not None:
        found.append(site.id)
        site = session.get(Site, site.parent_id) if site.parent_id else None
    return found


def signers(session: Session, report_id: int) -> set[int]:
    """Everyone who signed the report (author, countersigner, co-signer, addenda): none of them reviews it."""
    return set(session.scalars(select(ReportSignature.signer_id).where(ReportSignature.report_id == report_id)))


def candidates(session: Session, task: ReadingTask, excluded: Collection[int]) -> list[User]:
    """Active readers and consultants qualified for the task's modality at its centre or above, but none of
    ``excluded``; by name."""
    users = session.scalars(
        select(User)
        .where(User.active.is_(True), User.role.in_(REVIEWING_ROLES),
               User.site_id.in_(_centre_and_above(session, task.centre_site_id)), User.id.not_in(excluded))
        .order_by(User.name)
    ).all()
    return [user for user in users if task.modality in user.modalities]


def pick_reviewer(session: Session, task: ReadingTask, excluded: Collection[int]) -> User | None:
    """The candidate (:func:`candidates`) with the fewest pending reviews, ties by name; ``None`` if nobody."""
    found = candidates(session, task, excluded)
    pending = dict(session.execute(
        select(PeerReview.reviewer_id, func.count())
        .where(PeerReview.reviewer_id.in_([user.id for user in found]), PeerReview.state == ReviewState.PENDING)
        .group_by(PeerReview.reviewer_id)
    ).all())
    return min(found, key=lambda user: (pending.get(user.id, 0), user.name), default=None)


# --- what each person sees --------------------------------------------------------------------------------------


def visible_reviews(session: Session, user: User) -> ColumnElement[bool]:
    """A filter on :class:`PeerReview` for the reviews ``user`` sees: a supervisor or administrator those of
    their centre and below; a reader or consultant those given to them and, once scored, those of their reports."""
    if user.role in ("supervisor", "admin"):
        centres = select(ReadingTask.id).where(ReadingTask.centre_site_id.in_(subtree_ids(session, user.site_id)))
        return PeerReview.task_id.in_(centres)
    if user.role in REVIEWING_ROLES:
        authored = select(Report.id).where(Report.author_id == user.id)
        return or_(PeerReview.reviewer_id == user.id,
                   and_(PeerReview.state == ReviewState.DONE, PeerReview.report_id.in_(authored)))
    return false()


def _answered() -> ColumnElement[bool]:
    """A filter on :class:`PeerReview`: an addendum to the report was signed since the review was scored."""
    return exists().where(ReportAddendum.report_id == PeerReview.report_id,
                          ReportAddendum.signed_at >= PeerReview.done_at)


def awaiting(session: Session, user: User) -> ColumnElement[bool]:
    """A filter on :class:`PeerReview` for what waits on ``user``: the pending reviews they see, and the
    significant discrepancies found in their reports that no addendum has answered yet."""
    authored = select(Report.id).where(Report.author_id == user.id)
    to_amend = and_(PeerReview.state == ReviewState.DONE, PeerReview.score == Score.SIGNIFICANT,
                    PeerReview.report_id.in_(authored), ~_answered())
    return and_(visible_reviews(session, user), or_(PeerReview.state == ReviewState.PENDING, to_amend))


def awaiting_count(session: Session, user: User) -> int:
    """How many reviews wait on ``user`` (:func:`awaiting`)."""
    return session.scalar(select(func.count()).select_from(PeerReview).where(awaiting(session, user)))


def may_see(session: Session, user: User, review: PeerReview) -> bool:
    """Whether ``user`` sees ``review`` (:func:`visible_reviews`)."""
    return session.scalar(
        select(PeerReview.id).where(PeerReview.id == review.id, visible_reviews(session, user))
    ) is not None


def answering_addendum(session: Session, review: PeerReview) -> ReportAddendum | None:
    """The first addendum to the report signed since the review was scored, if any."""
    if review.done_at is None:
        return None
    return session.scalar(
        select(ReportAddendum)
        .where(ReportAddendum.report_id == review.report_id, ReportAddendum.signed_at >= review.done_at)
        .order_by(ReportAddendum.signed_at, ReportAddendum.id)
        .limit(1)
    )


def may_amend(session: Session, user: User, review: PeerReview) -> bool:
    """Whether ``user`` may add an addendum to the reviewed report: its author, or an expert reader who may
    amend it (:func:`reading_queue.access.may_countersign`), as :func:`reports.drafting.add_addendum` asks."""
    report = session.get(Report, review.report_id)
    task = session.get(ReadingTask, review.task_id)
    return user.id == report.author_id or access.may_countersign(session, user, task, None)


# --- the steps --------------------------------------------------------------------------------------------------


def _refuse_unless_pending(review: PeerReview) -> None:
    if review.state != ReviewState.PENDING:
        raise ReviewError(409, f"the review is {review.state} already", state=review.state)


def _subject(session: Session, review: PeerReview) -> tuple[Report, Study, ReadingTask]:
    report = session.get(Report, review.report_id)
    return report, session.get(Study, report.study_pk), session.get(ReadingTask, review.task_id)


def _give(session: Session, notifier: Notifier, review: PeerReview, reviewer: User, task: ReadingTask,
          days: int, at: datetime) -> None:
    """Give the review to ``reviewer`` and tell them."""
    review.reviewer_id, review.assigned_at = reviewer.id, at
    message = (f"质控复核 Peer review: please score the {task.modality} report of study {task.study_uid} "
               f"within {days} days")
    notifier.notify(session, [reviewer], task, "peer_review", message, at)


def sample(session: Session, config: Config, notifier: Notifier, signature_id: int, at: datetime) -> PeerReview | None:
    """Draw the report of a first final signature for peer review and assign a reviewer; the review made, or
    ``None`` (another kind of signature, not drawn, or drawn already by an earlier delivery of the event)."""
    signature = session.get(ReportSignature, signature_id)
    if signature is None or signature.addendum_id is not None or signature.role not in FINALISING_ROLES:
        return None
    report = session.get(Report, signature.report_id, with_for_update=True)
    if report.author_id is None or report.state not in SIGNED_FOR_GOOD:
        return None
    if session.scalar(select(PeerReview.id).where(PeerReview.report_id == report.id)) is not None:
        return None
    is_new = new_reader(session, config.quality, report.author_id, report.finalized_at or signature.signed_at)
    share = config.quality.new_reader_share if is_new else config.quality.sample_share
    if not drawn(sampling_key(config.data_dir), report.id, share):
        return None
    study = session.get(Study, report.study_pk)
    task = session.get(ReadingTask, report.task_id) if report.task_id else read_task(session, study)
    review = PeerReview(report_id=report.id, task_id=task.id, new_reader=is_new, state=ReviewState.PENDING,
                        comment="", created_at=at)
    session.add(review)
    session.flush()
    reviewer = pick_reviewer(session, task, signers(session, report.id))
    if reviewer is None:
        message = (f"质控复核无人可分配 Peer review unassigned: nobody else reads {task.modality} for study "
                   f"{study.study_uid}; please assign a reviewer")
        notifier.notify(session, supervisors(session, task.centre_site_id), task, "peer_review_unassigned", message, at)
    else:
        _give(session, notifier, review, reviewer, task, config.quality.review_days, at)
    record(session, task, "peer_review_drawn", "system", review_id=review.id, new_reader=is_new,
           reviewer=reviewer.name if reviewer else None)
    audit.record(session, "system", "peer_review.drawn", "study", study.study_uid, review_id=review.id,
                 report_id=report.id, new_reader=is_new, share=share, reviewer=reviewer.name if reviewer else None)
    return review


def score(session: Session, notifier: Notifier, review: PeerReview, user: User, code: object, comment: object,
          at: datetime) -> None:
    """The reviewer scores the report, once; a significant discrepancy is told to the supervisors and the author.

    ``code`` is a :class:`Score` code; ``comment`` is required for a discrepancy. Nothing is written when the
    input is wrong.
    """
    if review.reviewer_id != user.id:
        raise ReviewError(403, "only the reviewer this review is given to scores it")
    _refuse_unless_pending(review)
    if code not in SCORES:
        raise ReviewError.bad("score", f"expected one of {', '.join(Score)}")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise ReviewError.bad("comment", "expected text")
    comment = comment.strip()
    if len(comment) > COMMENT_LIMIT:
        raise ReviewError.bad("comment", f"at most {COMMENT_LIMIT} characters")
    if code != Score.AGREE and not comment:
        raise ReviewError.bad("comment", "say what differs: a comment is required for a discrepancy")
    review.state, review.score, review.comment, review.done_at = ReviewState.DONE, code, comment, at
    report, study, task = _subject(session, review)
    record(session, task, "peer_review_scored", user.name, review_id=review.id, score=code)
    audit.record(session, user.name, "peer_review.scored", "study", study.study_uid, review_id=review.id,
                 report_id=report.id, score=code)
    if code == Score.SIGNIFICANT:
        people = supervisors(session, task.centre_site_id)
        author = session.get(User, report.author_id)
        told = [*people, author] if author not in people else people
        message = (f"质控复核重大差异 Significant discrepancy in the {task.modality} report of study {study.study_uid} "
                   f"by {author.display_name or author.name}: {comment[:200]} — 请查看并补充报告 / please review and "
                   "add an addendum")
        notifier.notify(session, told, task, "peer_review_discrepancy", message[:400], at)


def start_addendum(session: Session, review: PeerReview, user: User, at: datetime) -> bool:
    """Start an addendum from a significant discrepancy: a draft citing the review, which the author (or an expert
    who may amend) edits and signs with :func:`reports.drafting.add_addendum`. ``False`` when it was started
    already (the draft stays as it is)."""
    if not may_amend(session, user, review):
        raise ReviewError(403, "only the report's author, or an expert reader of the modality who may amend it, "
                               "adds an addendum")
    if review.state != ReviewState.DONE or review.score != Score.SIGNIFICANT:
        raise ReviewError(409, "an addendum is started from a review that found a significant discrepancy",
                          state=review.state)
    if answering_addendum(session, review) is not None:
        raise ReviewError(409, "an addendum has been signed since this review")
    if review.addendum_draft is not None:
        return False
    review.addendum_draft = ADDENDUM_CITATION.format(id=review.id)
    review.addendum_started_at, review.addendum_started_by_id = at, user.id
    report, study, task = _subject(session, review)
    record(session, task, "peer_review_addendum_started", user.name, review_id=review.id)
    audit.record(session, user.name, "peer_review.addendum_started", "study", study.study_uid, review_id=review.id,
                 report_id=report.id)
    return True


def _supervised(session: Session, supervisor: User, review: PeerReview, reason: object) -> str:
    """The stripped reason, once ``supervisor`` may act on the pending ``review``."""
    if not access.may_supervise(session, supervisor, session.get(ReadingTask, review.task_id)):
        raise ReviewError(403, "only a supervisor of the report's centre may do this")
    _refuse_unless_pending(review)
    if not isinstance(reason, str) or not reason.strip():
        raise ReviewError.bad("reason", "say why, for the record")
    return reason.strip()


def reassign(session: Session, config: Config, notifier: Notifier, review: PeerReview, supervisor: User,
             reviewer: User | None, reason: object, at: datetime) -> User:
    """A supervisor gives a pending review to ``reviewer``, or (``None``) to the next candidate other than its
    reviewer now — as when that reviewer left; the new reviewer is told."""
    reason = _supervised(session, supervisor, review, reason)
    report, study, task = _subject(session, review)
    excluded = signers(session, report.id)
    if reviewer is None:
        now_with = {review.reviewer_id} if review.reviewer_id is not None else set()
        reviewer = pick_reviewer(session, task, excluded | now_with)
        if reviewer is None:
            raise ReviewError(409, f"nobody else is qualified to review this {task.modality} report")
    elif reviewer.id not in {user.id for user in candidates(session, task, excluded)}:
        raise ReviewError.bad("user", f"{reviewer.name} is not an active reader of {task.modality} at the report's centre "
                           "or above who has not signed it")
    elif reviewer.id == review.reviewer_id:
        raise ReviewError(409, f"the review is already with {reviewer.name}")
    previous = session.get(User, review.reviewer_id) if review.reviewer_id is not None else None
    _give(session, notifier, review, reviewer, task, config.quality.review_days, at)
    record(session, task, "peer_review_reassigned", supervisor.name, review_id=review.id, user=reviewer.name,
           previous=previous.name if previous else None, reason=reason)
    audit.record(session, supervisor.name, "peer_review.reassigned", "study", study.study_uid, review_id=review.id,
                 user=reviewer.name, previous=previous.name if previous else None, reason=reason)
    return reviewer


def cancel(session: Session, review: PeerReview, supervisor: User, reason: object) -> None:
    """A supervisor withdraws a pending review, with the reason recorded."""
    reason = _supervised(session, supervisor, review, reason)
    review.state = ReviewState.CANCELLED
    report, study, task = _subject(session, review)
    record(session, task, "peer_review_cancelled", supervisor.name, review_id=review.id, reason=reason)
    audit.record(session, supervisor.name, "peer_review.cancelled", "study", study.study_uid, review_id=review.id,
                 report_id=report.id, reason=reason)
