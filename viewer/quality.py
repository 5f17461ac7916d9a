"""The peer-review pages (质控复核): what waits on me, and one review with the signed report it is about.

- ``GET /reviews``: the reviews waiting on the caller (:func:`reports.quality.awaiting`): those to score and, for
  an author, significant discrepancies in their reports still to answer with an addendum; for a supervisor the
  centre's pending reviews.
- ``GET /reviews/<id>``: the signed report (fields, findings, impression, addenda) with a link to its images, the
  score form — three big buttons, a comment, submit — or the score given, and after a significant discrepancy the
  author's addendum: started here, then edited and signed through the report API by ``static/review.js``.
- ``POST /reviews/<id>`` (score) and ``POST /reviews/<id>/addendum`` (start the addendum): plain forms that work
  without JavaScript; a refusal shows the page again with the reason and what was typed.

The rules and the data are those of the JSON API (:mod:`reports.quality`, :func:`reports.quality_api.document`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reading_queue.notify import configured_notifier
from reports import quality as rules
from reports.quality import RADPEER, PeerReview, ReviewError, Score
from reports.quality_api import LIST_LIMIT, document, summary
from reports.templates import Template, load_templates
from telerad import audit, clock
from telerad.auth import user_in
from telerad.users import User
from viewer.worklist import language, local_time, patient_name, site_name

quality = Blueprint("quality", __name__)


def score_choices() -> list[tuple[str, int, str, str]]:
    """The three scores as the form offers them: code, RADPEER number, name and what it means."""
    texts = {
        Score.AGREE: (_("Agree"), _("I read it the same way.")),
        Score.MINOR: (_("Minor discrepancy"), _("A difference unlikely to matter to the patient.")),
        Score.SIGNIFICANT: (_("Significant discrepancy"), _("A difference likely to matter to the patient.")),
    }
    return [(score.value, RADPEER[score], *texts[score]) for score in Score]


@quality.app_template_global()
def review_state_label(state: str) -> str:
    """A review's state as people say it."""
    labels = {"pending": _("Waiting for a score"), "done": _("Scored"), "cancelled": _("Withdrawn")}
    return labels.get(state, state)


def _when(value: str | None) -> str:
    """An ISO 8601 time of the representation, in the service's time zone."""
    return local_time(datetime.fromisoformat(value)) if value else ""


def _field_rows(template: Template | None, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's structured fields as label and value in the interface's language (an option by its label)."""
    english = language() == "en"
    rows = []
    for field in template.fields if template is not None else ():
        value = fields.get(field.id)
        if value in (None, ""):
            continue
        option = next((o for o in field.options if o.value == value), None)
        shown = (option.label_en if english else option.label) if option else str(value)
        unit = field.unit_en if english else field.unit
        rows.append((field.label_en if english else field.label, f"{shown} {unit}".strip()))
    return rows


def _sessions() -> sessionmaker:
    return current_app.extensions["telerad.sessions"]


def _visible(session: Session, user: User, review_id: int, lock: bool = False) -> PeerReview:
    review = session.get(PeerReview, review_id, with_for_update=lock)
    if review is None or not rules.may_see(session, user, review):
        abort(404)
    return review


# --- pages -------------------------------------------------------------------------------------------------------


@quality.get("/reviews")
@login_required
def page() -> str:
    """The reviews waiting on me, oldest first."""
    at = clock.now()
    with _sessions()() as session:
        user = user_in(session)
        found = session.scalars(
            select(PeerReview).where(rules.awaiting(session, user))
            .order_by(PeerReview.created_at, PeerReview.id).limit(LIST_LIMIT)
        ).all()
        rows = [summary(session, review, at) for review in found]
    for row in rows:
        row["patient"]["shown"] = patient_name(row["patient"]["name"])
        row["site"]["shown"] = site_name(row["site"]["name"], row["site"]["name_en"])
        row["since"] = _when(row["created_at"])
    return render_template("review.html", review=None, rows=rows, me=user.name)


def _review_page(review_id: int, error: str | None = None, entered: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    """One review's page (the view is audited); ``error`` and ``entered`` when a form was refused."""
    at = clock.now()
    config = current_app.extensions["telerad.config"]
    with _sessions()() as session, session.begin():
        user = user_in(session)
        review = document(session, _visible(session, user, review_id), user, at)
        audit.record(session, user.name, "peer_review.viewed", "study", review["study_uid"], review_id=review_id,
                     via="page")
    template = load_templates(config.reports.templates_dir).get(review["report"]["template_id"])
    times = {name: _when(review[name]) for name in ("created_at", "done_at")}
    times["finalized_at"] = _when(review["report"]["finalized_at"])
    addenda = [{**item, "when": _when(item["signed_at"])} for item in review["report"]["addenda"]]
    html = render_template(
        "review.html", review=review, rows=None, fields=_field_rows(template, review["report"]["fields"]),
        template_name=(template.name_en if language() == "en" else template.name) if template else "",
        patient=patient_name(review["patient"]["name"]),
        site=site_name(review["site"]["name"], review["site"]["name_en"]), times=times, addenda=addenda,
        scores=score_choices(), error=error, entered=entered or {},
    )
    return html, status


@quality.get("/reviews/<int:review_id>")
@login_required
def review_page(review_id: int) -> tuple[str, int]:
    """One review: the signed report, its images, the score form or the score, the addendum."""
    return _review_page(review_id)


def _refusal(exc: ReviewError) -> str:
    """Why a form was refused, as people say it."""
    parameter = exc.extra.get("parameter")
    if parameter == "score":
        return _("Choose one of the three scores.")
    if parameter == "comment":
        return _("Write in the comment what differs: it is needed for a minor or significant discrepancy "
                 "(at most {n} characters).").format(n=rules.COMMENT_LIMIT)
    texts = {
        403: _("This is not yours to do: only the reviewer scores, and only the report's author or an expert adds "
               "an addendum."),
        409: _("This has been done already; the page now shows how things stand."),
    }
    return texts.get(exc.status, _("Something went wrong. Please try again."))


@quality.post("/reviews/<int:review_id>")
@login_required
def score(review_id: int) -> Response | tuple[str, int]:
    """Score the review from the form; a refusal shows the page again with the reason and what was typed."""
    entered = {"score": request.form.get("score", ""), "comment": request.form.get("comment", "")}
    notifier = configured_notifier(current_app.extensions["telerad.config"].reading.webhook_url)
    try:
        with _sessions()() as session, session.begin():
            user = user_in(session)
            review = _visible(session, user, review_id, lock=True)
            rules.score(session, notifier, review, user, entered["score"] or None, entered["comment"], clock.now())
            notifier.flush(session)
    except ReviewError as refused:
        return _review_page(review_id, _refusal(refused), entered, refused.status)
    flash(_("Thank you: your score is saved."), "review")
    return redirect(url_for("quality.review_page", review_id=review_id))


@quality.post("/reviews/<int:review_id>/addendum")
@login_required
def start_addendum(review_id: int) -> Response | tuple[str, int]:
    """Start the addendum from a significant discrepancy, then show it to edit and sign."""
    try:
        with _sessions()() as session, session.begin():
            user = user_in(session)
            rules.start_addendum(session, _visible(session, user, review_id, lock=True), user, clock.now())
    except ReviewError as refused:
        return _review_page(review_id, _refusal(refused), status=refused.status)
    return redirect(url_for("quality.review_page", review_id=review_id, _anchor="addendum"))
