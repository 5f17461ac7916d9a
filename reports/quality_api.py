"""Quality control's JSON API under ``/api/v1``: peer reviews and reader scorecards.

- ``GET /peer-reviews``: the reviews the caller sees (:func:`reports.quality.visible_reviews`) in the states
  ``state`` (comma-separated, default ``pending``), optionally of one ``reader`` (the report's author) or
  ``reviewer`` (user names); oldest first, at most :data:`LIST_LIMIT`.
- ``GET /peer-reviews/{id}``: one review with the signed report it is about; the view is audited.
- ``POST /peer-reviews/{id}`` ``{score, comment}``: the assigned reviewer scores it (``agree``, ``minor``,
  ``significant``), once (409 after).
- ``POST /peer-reviews/{id}/addendum``: the author (or an expert who may amend) starts an addendum from a
  significant discrepancy (201; 200 when started already): a draft citing the review, signed with
  ``POST /studies/{study_uid}/report/addenda`` like every addendum.
- ``POST /peer-reviews/{id}/reassign`` ``{user?, reason}`` and ``POST /peer-reviews/{id}/cancel`` ``{reason}``:
  a supervisor gives a pending review to someone else (without ``user``: the next candidate), or withdraws it.
- ``GET /scorecards?since=&until=&centre=&reader=``: the readers' scorecards (:mod:`reports.scorecards`) of the
  caller's centre and below (``centre``: a centre below it); a reader sees only their own. The period defaults
  to the :data:`DEFAULT_DAYS` days before now.

One transaction per request as the caller; errors are RFC 9457 problem details, and a refused request writes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue.access import may_supervise
from reading_queue.api import turnaround_filters
from reading_queue.notify import Notifier, configured_notifier
from reading_queue.tasks import ReadingTask
from reports import quality
from reports.drafting import addenda
from reports.models import Report
from reports.quality import RADPEER, PeerReview, ReviewError, ReviewState, Score
from reports.scorecards import scorecards
from telerad import audit, clock
from telerad.auth import caller_transaction
from telerad.config import Config
from telerad.problems import Problem, answer_with_problems
from telerad.sites import Site, subtree_ids
from telerad.users import User


quality_api = Blueprint("quality_api", __name__, url_prefix="/api/v1")
answer_with_problems(quality_api)

LIST_LIMIT = 500
DEFAULT_DAYS = 30


def _config() -> Config:
    return current_app.extensions["telerad.config"]


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the request body must be a JSON object")
    return body


def _named(session: Session, name: str, value: Any) -> User:
    """The user named ``value`` (a 400 naming the parameter ``name`` otherwise)."""
    user = session.scalar(select(User).where(User.name == value)) if isinstance(value, str) else None
    if user is None:
        raise ReviewError.bad(name, f"no user named {value!r}")
    return user


def _review(session: Session, user: User, review_id: int, lock: bool = False) -> PeerReview:
    """The review, or 404 whether it is unknown or hidden from ``user`` (existence is not revealed)."""
    review = session.get(PeerReview, review_id, with_for_update=lock)
    if review is None or not quality.may_see(session, user, review):
        raise Problem(404, f"no peer review {review_id} that you may see")
    return review


# --- representations -------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _person(user: User | None) -> dict[str, str] | None:
    return {"name": user.name, "display_name": user.display_name or user.name} if user is not None else None


def summary(session: Session, review: PeerReview, at: datetime) -> dict[str, Any]:
    """A review as lists show it: state, score, study, the report's author, the reviewer, when it is due."""
    report = session.get(Report, review.report_id)
    study = session.get(Study, report.study_pk)
    task = session.get(ReadingTask, review.task_id)
    site = session.get(Site, study.site_id)
    due_at = review.created_at + timedelta(days=_config().quality.review_days)
    return {
        "id": review.id,
        "state": review.state,
        "score": review.score,
        "radpeer": RADPEER[Score(review.score)] if review.score else None,
        "new_reader": review.new_reader,
        "study_uid": study.study_uid,
        "task_id": task.id,
        "modality": task.modality,
        "site": {"code": site.code, "name": site.name, "name_en": site.name_en},
        "patient": {"name": study.patient.name, "id": study.patient.patient_id},
        "description": study.description,
        "author": _person(session.get(User, report.author_id)),
        "reviewer": _person(session.get(User, review.reviewer_id) if review.reviewer_id else None),
        "created_at": _iso(review.created_at),
        "assigned_at": _iso(review.assigned_at),
        "due_at": _iso(due_at),
        "late": review.state == ReviewState.PENDING and at > due_at,
        "done_at": _iso(review.done_at),
    }


def _addendum(session: Session, review: PeerReview) -> dict[str, Any] | None:
    """The addendum started from the review: its draft, who started it, and the addendum signed since, if any."""
    if review.addendum_draft is None:
        return None
    signed = quality.answering_addendum(session, review)
    return {
        "draft": review.addendum_draft,
        "started_at": _iso(review.addendum_started_at),
        "started_by": _person(session.get(User, review.addendum_started_by_id)),
        "signed": {"id": signed.id, "text": signed.text, "signed_at": _iso(signed.signed_at)} if signed else None,
    }


def document(session: Session, review: PeerReview, user: User, at: datetime) -> dict[str, Any]:
    """A review with the signed report it is about and what ``user`` may do with it (every action checks again)."""
    report = session.get(Report, review.report_id)
    pending = review.state == ReviewState.PENDING
    supervises = may_supervise(session, user, session.get(ReadingTask, review.task_id))
    to_amend = (review.score == Score.SIGNIFICANT and quality.answering_addendum(session, review) is None
                and quality.may_amend(session, user, review))
    return {
        **summary(session, review, at),
        "comment": review.comment,
        "report": {
            "state": report.state,
            "template_id": report.template_id,
            "fields": report.fields or {},
            "findings": report.findings,
            "impression": report.impression,
            "critical": report.critical,
            "critical_category": report.critical_category,
            "finalized_at": _iso(report.finalized_at),
            "addenda": [
                {"id": item.id, "text": item.text, "author": _person(session.get(User, item.author_id)),
                 "signed_at": _iso(item.signed_at)}
                for item in addenda(session, report)
            ],
        },
        "addendum": _addendum(session, review),
        "may": {
            "score": pending and review.reviewer_id == user.id,
            "start_addendum": to_amend and review.addendum_draft is None,
            "sign_addendum": to_amend and review.addendum_draft is not None,
            "reassign": pending and supervises,
            "cancel": pending and supervises,
        },
    }


# --- peer reviews ----------------------------------------------------------------------------------------------


def _states() -> list[str]:
    raw = request.args.get("state", ReviewState.PENDING)
    states = list(dict.fromkeys(raw.split(",")))
    wrong = [state for state in states if state not in set(ReviewState)]
    if wrong:
        raise ReviewError.bad("state", f"{wrong[0]!r} is not a state; expected some of {', '.join(ReviewState)}")
    return states


@quality_api.get("/peer-reviews")
def list_reviews() -> Response:
    """The peer reviews the caller sees, in the asked states (default ``pending``), oldest first."""
    at = clock.now()
    with caller_transaction() as (session, user):
        where = [quality.visible_reviews(session, user), PeerReview.state.in_(_states())]
        if "reader" in request.args:
            author = _named(session, "reader", request.args["reader"])
            where.append(PeerReview.report_id.in_(select(Report.id).where(Report.author_id == author.id)))
        if "reviewer" in request.args:
            where.append(PeerReview.reviewer_id == _named(session, "reviewer", request.args["reviewer"]).id)
        found = session.scalars(
            select(PeerReview).where(and_(*where)).order_by(PeerReview.created_at, PeerReview.id).limit(LIST_LIMIT)
        ).all()
        body = {"at": at.isoformat(), "items": [summary(session, review, at) for review in found]}
    return jsonify(body)


@quality_api.get("/peer-reviews/<int:review_id>")
def get_review(review_id: int) -> Response:
    """One review with the report it is about; the view is audited."""
    at = clock.now()
    with caller_transaction() as (session, user):
        review = _review(session, user, review_id)
        body = document(session, review, user, at)
        audit.record(session, user.name, "peer_review.viewed", "study", body["study_uid"], review_id=review.id)
    return jsonify(body)


def _act(review_id: int, act: Callable[[Session, User, PeerReview, dict[str, Any], Notifier, datetime], Any],
         body: bool = True) -> tuple[dict[str, Any], Any]:
    """Run ``act(session, user, review, body, notifier, at)`` on the review, locked, in one transaction as the
    caller, its notices written before the commit; the review as it is then, and what ``act`` returned."""
    at = clock.now()
    with caller_transaction() as (session, user):
        given = _body() if body else {}
        review = _review(session, user, review_id, lock=True)
        notifier = configured_notifier(_config().reading.webhook_url)
        result = act(session, user, review, given, notifier, at)
        notifier.flush(session)
        return document(session, review, user, at), result


@quality_api.post("/peer-reviews/<int:review_id>")
def score_review(review_id: int) -> Response:
    """The assigned reviewer scores the report, once; a significant discrepancy is told to supervisors and author."""
    answer, _ = _act(review_id, lambda session, user, review, body, notifier, at: quality.score(
        session, notifier, review, user, body.get("score"), body.get("comment"), at))
    return jsonify(answer)


@quality_api.post("/peer-reviews/<int:review_id>/addendum")
def start_addendum(review_id: int) -> tuple[Response, int]:
    """Start an addendum from a significant discrepancy: 201 with the draft, 200 when it was started already."""
    answer, started = _act(review_id, lambda session, user, review, body, notifier, at: quality.start_addendum(
        session, review, user, at), body=False)
    return jsonify(answer), 201 if started else 200


@quality_api.post("/peer-reviews/<int:review_id>/reassign")
def reassign_review(review_id: int) -> Response:
    """A supervisor gives a pending review to ``user``, or without one to the next candidate, with a reason."""
    answer, _ = _act(review_id, lambda session, user, review, body, notifier, at: quality.reassign(
        session, _config(), notifier, review, user,
        _named(session, "user", body["user"]) if body.get("user") is not None else None, body.get("reason"), at))
    return jsonify(answer)


@quality_api.post("/peer-reviews/<int:review_id>/cancel")
def cancel_review(review_id: int) -> Response:
    """A supervisor withdraws a pending review, with a reason."""
    answer, _ = _act(review_id, lambda session, user, review, body, notifier, at: quality.cancel(
        session, review, user, body.get("reason")))
    return jsonify(answer)


# --- scorecards ------------------------------------------------------------------------------------------------


@quality_api.get("/scorecards")
def reader_scorecards() -> Response:
    """The readers' scorecards over the period: a supervisor's centre and below, a reader's own card."""
    at = clock.now()
    with caller_transaction() as (session, user):
        if user.role == "station":
            raise Problem(403, "scorecards are for readers and supervisors")
        filters = turnaround_filters(session, user)  # since, until, centre and reader, checked as for turnaround
        for name in ("site", "modality", "priority"):
            if getattr(filters, name):
                raise ReviewError.bad(name, "a scorecard covers every site, modality and priority of its reader")
        until = filters.until or at
        since = filters.since or until - timedelta(days=DEFAULT_DAYS)
        if until <= since:
            raise ReviewError.bad("since", "must be earlier than until")
        sites = subtree_ids(session, user.site_id)
        if filters.centre:
            sites &= subtree_ids(session, session.scalar(select(Site.id).where(Site.code == filters.centre)))
        cards = [card for card in scorecards(session, sites, since, until)
                 if filters.reader in (None, card["name"])]
    return jsonify({"since": since.isoformat(), "until": until.isoformat(), "items": cards})


# --- errors ----------------------------------------------------------------------------------------------------



