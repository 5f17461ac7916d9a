"""The reports' JSON API under ``/api/v1``: the draft, signatures, addenda, critical findings, templates, PDF.

- ``GET /studies/{study_uid}/report``: the report with its parts (fields,
  findings, impression), state, template, signatures, addenda and critical
  notice — or, before the first save and for whoever may write it, the
  proposed draft (``saved: false``, revision 0). With ``Accept:
  application/fhir+json``: the signed report as a FHIR R4 DiagnosticReport.
- ``PUT /studies/{study_uid}/report``: save the draft (autosave); the body
  carries the ``revision`` it was made from (0 for the first save) and any of
  ``template_id``, ``fields``, ``findings``, ``impression``, ``critical``,
  ``critical_category``. A stale revision is a 409 with the current one.
- ``POST .../report/sign`` ``{password}``: the author signs (final or preliminary);
  ``POST .../report/countersign`` ``{password}``: a senior makes a preliminary report final;
  ``POST .../report/cosign`` ``{password, answer?}``: the consultant co-signs and answers the consult;
  ``POST .../report/addenda`` ``{text, password}``: a signed addendum (amended);
  ``POST .../report/critical/ack``: the station acknowledges a critical finding;
  ``GET .../report/pdf``: the latest signed PDF.
- ``GET /report-templates``: the templates, for the editor.

The same patterns as :mod:`reading_queue.api`: one transaction per request
as the caller, access asked of :mod:`reading_queue.access`, errors as RFC 9457
problem details; a wrong password is a 403 and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue import access
from reading_queue.consult import ConsultError
from reports import critical, drafting, fhir
from reports.drafting import Context, ReportError
from reports.keys import WrongPassword
from reports.models import CriticalNotice, Report, ReportSignature, ReportState
from telerad import audit, clock
from telerad.auth import caller_transaction
from telerad.problems import Problem, answer_with_problems, problem_response
from telerad.users import User


reports_api = Blueprint("reports", __name__, url_prefix="/api/v1")
answer_with_problems(reports_api)
_CONTEXT = "reports.context"
WRONG_PASSWORD = "the password is not correct"


@reports_api.record_once
def _set_up(state: Any) -> None:
    """Load (and so validate) the templates when the app is assembled: a broken file stops start-up, named."""
    state.app.extensions[_CONTEXT] = drafting.context_for(state.app.extensions["telerad.config"])


def _ctx() -> Context:
    return current_app.extensions[_CONTEXT]


def _study(session: Session, user: User, study_uid: str) -> Study:
    """The study, or 404 whether it is unknown or hidden from ``user`` (existence is not revealed)."""
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None or not access.may_see_study(session, user, study):
        raise Problem(404, f"no study {study_uid} that you may see")
    return study


def _bad(name: str, reason: str) -> Problem:
    return Problem(400, f"{name}: {reason}", parameter=name)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _bad(name, "expected a string")
    return value


def _password(body: dict[str, Any]) -> str:
    password = _text(body, "password")
    if not password:
        raise _bad("password", "confirm with your password")
    return password


def _refused(study_uid: str, user_name: str, action: str) -> None:
    """Record a signature refused for a wrong password (in its own transaction: the request's is rolled back)."""
    with current_app.extensions["telerad.sessions"]() as session, session.begin():
        audit.record(session, user_name, "report.sign_failed", "study", study_uid, step=action,
                     reason="wrong password")


# --- representations -------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _person(session: Session, user_id: int | None) -> dict[str, str] | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    return {"name": user.name, "display_name": user.display_name or user.name}


def _notice(session: Session, notice: CriticalNotice | None) -> dict[str, Any] | None:
    if notice is None:
        return None
    return {
        "category": notice.category,
        "notified_at": _iso(notice.notified_at),
        "acknowledged_at": _iso(notice.acknowledged_at),
        "acknowledged_by": _person(session, notice.acknowledged_by_id),
        "escalated_at": _iso(notice.escalated_at),
    }


def _may(session: Session, user: User, study: Study, report: Report | None, at: datetime) -> dict[str, bool]:
    """What the caller may do with the report now (for the editor's buttons; every action checks again)."""
    holds = access.writing_task(session, user, study.id, at)
    state = report.state if report is not None else ReportState.DRAFT
    task = drafting.read_task(session, study)
    expert = task is not None and access.may_countersign(session, user, task, report.author_id if report else None)
    consult = holds is not None and holds.kind == "consult"
    return {
        "edit": holds is not None and state == ReportState.DRAFT,
        "sign": holds is not None and holds.kind == "read" and report is not None and state == ReportState.DRAFT,
        "countersign": expert and state == ReportState.PRELIMINARY,
        "cosign": consult and report is not None and state != ReportState.DRAFT,
        "add_addendum": report is not None and state in drafting.SIGNED_FOR_GOOD
        and (consult or report.author_id == user.id or (task is not None and access.may_countersign(session, user, task, None))),
        "acknowledge_critical": access.may_acknowledge_critical(session, user, study),
    }


def _describe(session: Session, ctx: Context, study: Study, user: User, report: Report | None,
              at: datetime) -> dict[str, Any]:
    """The report as the editor and the station page read it."""
    task = drafting.read_task(session, study)
    values = drafting.content(report) if report is not None else drafting.proposal(ctx, session, study, task)
    template = ctx.templates.get(values["template_id"])
    signed = drafting.signatures(session, report) if report is not None else []
    parts = drafting.addenda(session, report) if report is not None else []
    body: dict[str, Any] = {
        "study_uid": study.study_uid,
        "task_id": task.id if task is not None else None,
        "saved": report is not None,
        "state": report.state if report is not None else ReportState.DRAFT.value,
        "revision": report.revision if report is not None else 0,
        **values,
        "template": template.as_dict() if template is not None else None,
        "author": _person(session, report.author_id) if report is not None else None,
        "created_at": _iso(report.created_at) if report is not None else None,
        "updated_at": _iso(report.updated_at) if report is not None else None,
        "finalized_at": _iso(report.finalized_at) if report is not None else None,
        "awaiting": drafting.awaiting(report) if report is not None else None,
        "signatures": [
            {"id": s.id, "role": s.role, "signer": _person(session, s.signer_id), "signed_at": _iso(s.signed_at),
             "addendum_id": s.addendum_id, "algorithm": s.algorithm, "has_pdf": s.pdf_key is not None}
            for s in signed
        ],
        "addenda": [
            {"id": a.id, "text": a.text, "author": _person(session, a.author_id), "created_at": _iso(a.created_at),
             "signed_at": _iso(a.signed_at)}
            for a in parts
        ],
        "critical_notice": _notice(session, critical.open_notice(session, report)) if report is not None else None,
        "measurements": drafting.ecg_measurements(session, study),
        "may": _may(session, user, study, report, at),
    }
    return body


def _readable(session: Session, user: User, study: Study) -> Report | None:
    """The report if ``user`` may read it; the proposal (``None``) only for whoever may write it; else 404."""
    report = drafting.report_of(session, study)
    if report is not None:
        if not access.may_read_report(session, user, study, report.state):
            raise Problem(404, f"study {study.study_uid} has no signed report yet")
        return report
    if user.role == "station":
        raise Problem(404, f"study {study.study_uid} has no signed report yet")
    return None


def _wants_fhir() -> bool:
    """Whether the caller asks for FHIR (``Accept: application/fhir+json``) rather than the plain JSON (the default)."""
    return request.accept_mimetypes.best_match(["application/json", fhir.MEDIA_TYPE]) == fhir.MEDIA_TYPE


# --- endpoints -------------------------------------------------------------------------------------------------


@reports_api.get("/report-templates")
def templates() -> Response:
    """Every installed report template, for the editor."""
    with caller_transaction():
        ctx = _ctx()
        body = {
            "templates": [template.as_dict() for template in ctx.templates.values()],
            "critical_categories": [c.model_dump() for c in ctx.config.reports.critical_categories],
        }
    return jsonify(body)


@reports_api.get("/studies/<study_uid>/report")
def get_report(study_uid: str) -> Response:
    """The study's report (or the proposed draft); as a FHIR DiagnosticReport on ``Accept: application/fhir+json``."""
    at = clock.now()
    with caller_transaction() as (session, user):
        ctx = _ctx()
        study = _study(session, user, study_uid)
        report = _readable(session, user, study)
        if _wants_fhir():
            if report is None or report.state == ReportState.DRAFT:
                raise Problem(404, f"study {study_uid} has no signed report yet")
            resource = fhir.diagnostic_report(
                session, report, base_url=request.url_root, templates=ctx.templates,
                timezone=ctx.config.reading.timezone,
            )
            audit.record(session, user.name, "report.viewed", "study", study_uid, format="fhir", state=report.state)
            response = current_app.json.response(resource)
            response.mimetype = fhir.MEDIA_TYPE
            return response
        body = _describe(session, ctx, study, user, report, at)
        audit.record(session, user.name, "report.viewed", "study", study_uid, state=body["state"])
    return jsonify(body)


@reports_api.put("/studies/<study_uid>/report")
def put_report(study_uid: str) -> Response:
    """Save the draft from the ``revision`` it was made from; a stale revision is a 409 with the current one."""
    at = clock.now()
    with caller_transaction() as (session, user):
        ctx = _ctx()
        body = _body()
        revision = body.get("revision")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise _bad("revision", "expected the whole-number revision the draft was loaded at (0 for a new one)")
        study = _study(session, user, study_uid)
        changes = {key: value for key, value in body.items() if key != "revision"}
        report = drafting.save_draft(ctx, session, study, user, changes, revision, at)
        answer = _describe(session, ctx, study, user, report, at)
    return jsonify(answer)


def _signed(study_uid: str, action: str, sign: Any) -> Response:
    """Run a signing action in one transaction; a wrong password is a 403 that changes nothing (and is audited)."""
    at = clock.now()
    name = None
    try:
        with caller_transaction() as (session, user):
            name = user.name
            ctx = _ctx()
            study = _study(session, user, study_uid)
            body = _body()
            sign(ctx, session, study, user, body, at)
            report = drafting.report_of(session, study)
            answer = _describe(session, ctx, study, user, report, at)
    except WrongPassword:
        _refused(study_uid, name or "-", action)
        raise Problem(403, WRONG_PASSWORD) from None
    return jsonify(answer)


@reports_api.post("/studies/<study_uid>/report/sign")
def sign_report(study_uid: str) -> Response:
    """The author signs the draft with their password: final, or preliminary where a countersignature is needed."""
    return _signed(study_uid, "sign", lambda ctx, session, study, user, body, at: drafting.sign(
        ctx, session, study, user, _password(body), at))


@reports_api.post("/studies/<study_uid>/report/countersign")
def countersign_report(study_uid: str) -> Response:
    """A senior countersigns a preliminary report with their password: it becomes final."""
    return _signed(study_uid, "countersign", lambda ctx, session, study, user, body, at: drafting.countersign(
        ctx, session, study, user, _password(body), at))


@reports_api.post("/studies/<study_uid>/report/cosign")
def cosign_report(study_uid: str) -> Response:
    """The consultant holding a consult co-signs the signed report; the consult is answered."""
    return _signed(study_uid, "cosign", lambda ctx, session, study, user, body, at: drafting.cosign(
        ctx, session, study, user, _password(body), _text(body, "answer", required=False), at))


@reports_api.post("/studies/<study_uid>/report/addenda")
def add_addendum(study_uid: str) -> tuple[Response, int]:
    """A signed addendum to a final report: the report becomes amended, the original unchanged."""
    return _signed(study_uid, "addendum", lambda ctx, session, study, user, body, at: drafting.add_addendum(
        ctx, session, study, user, _text(body, "text"), _password(body), at)), 201


@reports_api.post("/studies/<study_uid>/report/critical/ack")
def acknowledge_critical(study_uid: str) -> Response:
    """The sending station acknowledges the report's critical finding (again: nothing changes)."""
    at = clock.now()
    with caller_transaction() as (session, user):
        study = _study(session, user, study_uid)
        _report, notice = drafting.acknowledge_critical(session, study, user, at)
        body = {"study_uid": study_uid, **_notice(session, notice)}
    return jsonify(body)


@reports_api.get("/studies/<study_uid>/report/pdf")
def report_pdf(study_uid: str) -> Response:
    """The latest signed PDF of the report, byte for byte as signed, to view and print."""
    with caller_transaction() as (session, user):
        ctx = _ctx()
        study = _study(session, user, study_uid)
        report = _readable(session, user, study)
        latest = None
        if report is not None:
            latest = session.scalar(
                select(ReportSignature)
                .where(ReportSignature.report_id == report.id, ReportSignature.pdf_key.is_not(None))
                .order_by(ReportSignature.id.desc())
                .limit(1)
            )
        if latest is None:
            raise Problem(404, f"study {study_uid} has no signed report yet")
        data = ctx.storage.read(latest.pdf_key)
        audit.record(session, user.name, "report.pdf_viewed", "study", study_uid, signature_id=latest.id)
    response = Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="report-{study_uid}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- errors ----------------------------------------------------------------------------------------------------


@reports_api.errorhandler(ReportError)
def _on_report_error(exc: ReportError) -> Response:
    return problem_response(exc.status, str(exc), **exc.extra)


@reports_api.errorhandler(ConsultError)
def _on_consult_error(exc: ConsultError) -> Response:
    return problem_response(exc.status, str(exc))


