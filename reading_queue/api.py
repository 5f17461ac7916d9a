"""The JSON API under ``/api/v1``: worklist, claims, consults, urgency, study status and turnaround.

Every request runs in one database transaction as the caller
(:func:`telerad.auth.user_in`); what the caller may see and do is asked of
:mod:`reading_queue.access` (directly, or through :mod:`reading_queue.claims`
and :mod:`reading_queue.consult`). Errors are RFC 9457 problem details
(``application/problem+json``), never HTML. The endpoints are described by
``/api/v1/openapi.json`` (OpenAPI 3.1, :mod:`reading_queue.openapi`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import ColumnElement, Row, Select, and_, select, union_all
from sqlalchemy.orm import Session, aliased
from werkzeug.exceptions import HTTPException

from pacs_node.index import Patient, Study
from reading_queue import claims, live, supervision
from reading_queue.access import may_see_study, may_set_duty, sees_only_own_figures, visible_tasks
from reading_queue.assignment import DutyShift
from reading_queue.claims import ClaimError
from reading_queue.consult import ANSWER_MODES, ConsultError, answer_consult, request_consult
from reading_queue.notify import Notification, configured_notifier
from reading_queue.supervision import SupervisionError, reprioritise
from reading_queue.openapi import OPENAPI
from reading_queue.tasks import (
    MODALITIES, PRIORITIES, STUDY_STATUS, ReadingTask, TaskEvent, TaskState, UrgencyMark,
)
from reading_queue.turnaround import BREACHES_SHOWN, Filters, figures
from telerad import audit, clock
from telerad.config import ReadingSection
from telerad.sites import Site, subtree_ids
from telerad.auth import caller_transaction
from telerad.problems import Problem, answer_with_problems, http_problem, problem_response
from telerad.users import User


api = Blueprint("reading_queue", __name__, url_prefix="/api/v1")
answer_with_problems(api)

RUNNING = (TaskState.OPEN, TaskState.CLAIMED)
NOTIFICATIONS_SHOWN = 50

_holder = aliased(User, name="holder")
_assignee = aliased(User, name="assignee")


# --- authentication and transactions -------------------------------------------------------------


def _policy() -> ReadingSection:
    return current_app.extensions["telerad.config"].reading


# --- parameters ----------------------------------------------------------------------------------


def _bad(name: str, reason: str) -> Problem:
    return Problem(400, f"{name}: {reason}", parameter=name)


def _choice(name: str, value: Any, allowed: Collection[str], required: bool = False) -> str | None:
    """``value`` if it is one of ``allowed`` (``None`` when absent and optional); else a 400 naming ``name``."""
    if (value is None and not required) or value in allowed:
        return value
    raise _bad(name, f"expected one of {', '.join(allowed)}")


def _int_arg(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(raw)
    except ValueError:
        raise _bad(name, f"expected a whole number from {low}" + (f" to {high}" if high is not None else "")) from None
    return value


def _time_arg(name: str) -> datetime | None:
    """An ISO 8601 date or date-time; without an offset it is in the service's time zone."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "expected an ISO 8601 date or date-time, e.g. 2026-03-01 or 2026-03-01T08:00:00+08:00") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(_policy().timezone))


def _states_arg() -> list[str]:
    raw = request.args.get("state")
    if raw is None:
        return list(RUNNING)
    return list(dict.fromkeys(_choice("state", state, [s.value for s in TaskState]) for state in raw.split(",")))


def _site_arg(session: Session, name: str = "site") -> Site | None:
    code = request.args.get(name)
    if code is None:
        return None
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise _bad(name, f"no site with code {code!r}")
    return site


def _user_arg(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise _bad("user", f"no user named {name!r}")
    return user


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the request body must be a JSON object")
    return body


def _body_time(body: dict[str, Any], name: str) -> datetime:
    """A date-time from the body; without an offset it is in the service's time zone."""
    try:
        value = datetime.fromisoformat(_text(body, name))
    except ValueError:
        raise _bad(name, "expected an ISO 8601 date-time, e.g. 2026-03-01T08:00:00+08:00") from None
    return (value if value.tzinfo else value.replace(tzinfo=ZoneInfo(_policy().timezone))).astimezone(UTC)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _bad(name, "expected a string")
    return value


# --- representations -----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _person(name: str | None, display_name: str | None) -> dict[str, str] | None:
    return {"name": name, "display_name": display_name or name} if name is not None else None


def _worklist_page(where: ColumnElement[bool], states: list[str], limit: int, offset: int) -> Select:
    """The ids of one worklist page, by deadline.

    One branch per state, each walking ``ix_reading_tasks_state_due`` in
    deadline order and stopping once it has enough rows, merged by deadline:
    the cost follows the page size, not the backlog.
    """
    branches = [
        select(ReadingTask.id, ReadingTask.due_at)
        .where(where, ReadingTask.state == state)
        .order_by(ReadingTask.due_at, ReadingTask.id)
        .limit(limit + offset)
        .subquery()
        for state in states
    ]
    merged = union_all(*(select(branch.c.id, branch.c.due_at) for branch in branches)).subquery()
    return select(merged.c.id).order_by(merged.c.due_at, merged.c.id).limit(limit).offset(offset)


def _task_rows(session: Session, where: ColumnElement[bool]) -> Sequence[Row]:
    """Tasks matching ``where`` by deadline, with their study's patient, the sending site and the people: one query."""
    query = (
        select(
            ReadingTask, Patient.name.label("patient_name"), Patient.patient_id, Site.code.label("site_code"),
            Site.name.label("site_name"), Site.name_en.label("site_name_en"),
            _holder.name.label("holder_name"), _holder.display_name.label("holder_display_name"),
            _assignee.name.label("assignee_name"), _assignee.display_name.label("assignee_display_name"),
        )
        .join(Study, Study.id == ReadingTask.study_pk)
        .join(Patient, Patient.id == Study.patient_pk)
        .join(Site, Site.id == ReadingTask.source_site_id)
        .outerjoin(_holder, _holder.id == ReadingTask.holder_id)
        .outerjoin(_assignee, _assignee.id == ReadingTask.assignee_id)
        .where(where)
        .order_by(ReadingTask.due_at, ReadingTask.id)
    )
    return session.execute(query).all()


def _task_item(row: Row, at: datetime) -> dict[str, Any]:
    """A task as the worklist shows it; ``seconds_left`` is negative when overdue, null when done."""
    task: ReadingTask = row.ReadingTask
    return {
        "task_id": task.id,
        "kind": task.kind,
        "parent_task_id": task.parent_id,
        "state": task.state,
        "study_uid": task.study_uid,
        "patient": {"name": row.patient_name, "id": row.patient_id},
        "site": {"code": row.site_code, "name": row.site_name, "name_en": row.site_name_en},
        "modality": task.modality,
        "priority": task.priority,
        "priority_source": task.priority_source,
        "opened_at": _iso(task.opened_at),
        "due_at": _iso(task.due_at),
        "seconds_left": math.floor((task.due_at - at).total_seconds()) if task.state in RUNNING else None,
        "holder": _person(row.holder_name, row.holder_display_name),
        "lease_until": _iso(task.lease_until),
        "assignee": _person(row.assignee_name, row.assignee_display_name),
        "escalated": task.escalated_at is not None,
        "breached": task.breached_at is not None,
        "reminders_sent": task.reminders_sent,
        "signed_at": _iso(task.signed_at),
    }


def _task_or_404(session: Session, task_id: int) -> ReadingTask:
    task = session.get(ReadingTask, task_id)
    if task is None:
        raise Problem(404, f"no task {task_id}")
    return task


def _one_task(session: Session, task_id: int, at: datetime) -> dict[str, Any]:
    return _task_item(_task_rows(session, ReadingTask.id == task_id)[0], at)


def _notifications(session: Session, user: User) -> list[dict[str, Any]]:
    """The caller's unread in-app notices, newest first."""
    rows = session.scalars(
        select(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(NOTIFICATIONS_SHOWN)
    )
    return [
        {"id": n.id, "task_id": n.task_id, "kind": n.kind, "message": n.message, "created_at": _iso(n.created_at)}
        for n in rows
    ]


# --- studies -------------------------------------------------------------------------------------


def _visible_study(session: Session, user: User, study_uid: str, lock: bool = False) -> Study:
    """The study, or 404 whether it is unknown or hidden from ``user`` (existence is not revealed)."""
    query = select(Study).where(Study.study_uid == study_uid)
    study = session.scalar(query.with_for_update() if lock else query)
    if study is None or not may_see_study(session, user, study):
        raise Problem(404, f"no study {study_uid} that you may see")
    return study


def _study_item(session: Session, study: Study) -> dict[str, Any]:
    site = session.get(Site, study.site_id)
    patient = study.patient
    return {
        "study_uid": study.study_uid,
        "patient": {"name": patient.name, "id": patient.patient_id, "sex": patient.sex, "birth_date": patient.birth_date},
        "site": {"code": site.code, "name": site.name, "name_en": site.name_en},
        "modalities": [m for m in study.modalities.split("\\") if m],
        "description": study.description,
        "accession_number": study.accession_number,
        "study_date": study.study_date,
        "num_series": study.num_series,
        "num_instances": study.num_instances,
        "state": study.state,
        "received_at": _iso(study.first_received_at),
        "last_received_at": _iso(study.last_received_at),
        "completed_at": _iso(study.completed_at),
    }


def _read_task(session: Session, study: Study, lock: bool = False) -> ReadingTask | None:
    query = select(ReadingTask).where(ReadingTask.study_pk == study.id, ReadingTask.kind == "read")
    return session.scalar(query.with_for_update() if lock else query)


def _timeline(session: Session, task_ids: list[int], for_station: bool) -> list[dict[str, Any]]:
    """The tasks' events in order; a station is not shown the centre's internal quality control."""
    query = select(TaskEvent).where(TaskEvent.task_id.in_(task_ids)).order_by(TaskEvent.at, TaskEvent.id)
    if for_station:
        query = query.where(TaskEvent.kind.not_like("peer_review%"))
    events = session.scalars(query)
    return [
        {"at": _iso(e.at), "task_id": e.task_id, "actor": e.actor, "kind": e.kind, "detail": e.detail} for e in events
    ]


def _figures_reader(user: User) -> str | None:
    """The ``reader`` filter: readers and consultants see their own figures only."""
    asked = request.args.get("reader")
    if not sees_only_own_figures(user):
        return asked
    if asked not in (None, user.name):
        raise Problem(403, "readers see their own turnaround figures only")
    return user.name


# --- endpoints -----------------------------------------------------------------------------------


@api.get("/worklist")
def worklist() -> Response:
    """The caller's worklist by deadline, with their unread notices."""
    at = clock.now()
    with caller_transaction() as (session, user):
        conditions = [visible_tasks(session, user)]
        if modality := _choice("modality", request.args.get("modality"), MODALITIES):
            conditions.append(ReadingTask.modality == modality)
        if priority := _choice("priority", request.args.get("priority"), PRIORITIES):
            conditions.append(ReadingTask.priority == priority)
        if site := _site_arg(session):
            conditions.append(ReadingTask.source_site_id == site.id)
        limit, offset = _int_arg("limit", 100, 1, 500), _int_arg("offset", 0, 0)
        page = _worklist_page(and_(*conditions), _states_arg(), limit, offset)
        rows = _task_rows(session, ReadingTask.id.in_(page))
        body = {
            "at": _iso(at),
            "items": [_task_item(row, at) for row in rows],
            "notifications": _notifications(session, user),
        }
    return jsonify(body)


@api.post("/tasks/<int:task_id>/claim")
def claim_task(task_id: int) -> Response:
    """Claim the task, or renew the lease when the holder calls again."""
    at = clock.now()
    with caller_transaction() as (session, user):
        claims.claim(session, _policy(), task_id, user, at)
        body = _one_task(session, task_id, at)
    return jsonify(body)


@api.post("/tasks/<int:task_id>/release")
def release_task(task_id: int) -> Response:
    """Give a held task back to the worklist."""
    at = clock.now()
    with caller_transaction() as (session, user):
        claims.release(session, task_id, user)
        body = _one_task(session, task_id, at)
    return jsonify(body)


@api.post("/tasks/<int:task_id>/consult")
def ask_consult(task_id: int) -> tuple[Response, int]:
    """Ask the province about a held reading task; answers the new consult task."""
    at = clock.now()
    with caller_transaction() as (session, user):
        question = _text(_body(), "question")
        consult = request_consult(session, _policy(), _task_or_404(session, task_id), user, question, at)
        body = _one_task(session, consult.id, at)
    return jsonify(body), 201


@api.post("/tasks/<int:task_id>/answer")
def answer(task_id: int) -> Response:
    """Answer a held consult as a co-signature or an addendum; the consult is then done."""
    at = clock.now()
    with caller_transaction() as (session, user):
        body = _body()
        text, mode = _text(body, "answer"), _choice("mode", body.get("mode"), ANSWER_MODES, required=True)
        answer_consult(session, _task_or_404(session, task_id), user, text, mode, at)
        item = _one_task(session, task_id, at)
    return jsonify(item)


@api.post("/studies/<study_uid>/urgency")
def mark_urgency(study_uid: str) -> Response:
    """A station marks the urgency of its study; a task already made takes the new priority."""
    at = clock.now()
    with caller_transaction() as (session, user):
        if user.role != "station":
            raise Problem(403, "only stations mark the urgency of their studies")
        priority = _choice("priority", _body().get("priority"), PRIORITIES, required=True)
        study = _visible_study(session, user, study_uid, lock=True)
        mark = session.get(UrgencyMark, study_uid) or UrgencyMark(study_uid=study_uid)
        mark.priority, mark.marked_by, mark.marked_at = priority, user.name, at
        session.add(mark)
        task = _read_task(session, study, lock=True)
        if task is not None and task.state in RUNNING and task.priority != priority:
            reprioritise(session, _policy(), task, priority, user.name, "marked by station", "station")
        body = {
            "study_uid": study_uid,
            "priority": priority,
            "marked_by": user.name,
            "marked_at": _iso(at),
            "task": _one_task(session, task.id, at) if task is not None else None,
        }
    return jsonify(body)


@api.post("/duty")
def set_duty() -> tuple[Response, int]:
    """A supervisor puts a reader on (or off) duty for a period; it overrides the weekly roster."""
    with caller_transaction() as (session, user):
        body = _body()
        reader = _user_arg(session, _text(body, "user"))
        if not may_set_duty(session, user, reader):
            raise Problem(403, "only a supervisor of the reader's centre changes the roster")
        starts, ends = _body_time(body, "starts_at"), _body_time(body, "ends_at")
        if ends <= starts:
            raise _bad("ends_at", "must be after starts_at")
        on_duty = body.get("on_duty")
        if not isinstance(on_duty, bool):
            raise _bad("on_duty", "expected true or false")
        shift = DutyShift(user_id=reader.id, starts_at=starts, ends_at=ends, on_duty=on_duty, set_by=user.name)
        session.add(shift)
        session.flush()
        audit.record(session, user.name, "duty.changed", "user", reader.name,
                     starts_at=_iso(starts), ends_at=_iso(ends), on_duty=on_duty)
        answer = {"id": shift.id, "user": reader.name, "starts_at": _iso(starts), "ends_at": _iso(ends),
                  "on_duty": on_duty, "set_by": user.name}
    return jsonify(answer), 201


@api.post("/tasks/<int:task_id>/reassign")
def reassign_task(task_id: int) -> Response:
    """A supervisor gives a running task to another qualified reader of its centre, with a reason."""
    at = clock.now()
    with caller_transaction() as (session, user):
        body = _body()
        reader = _user_arg(session, _text(body, "user"))
        notifier = configured_notifier(_policy().webhook_url)
        supervision.reassign(session, notifier, _task_or_404(session, task_id), user, reader, _text(body, "reason"), at)
        notifier.flush(session)
        item = _one_task(session, task_id, at)
    return jsonify(item)


@api.post("/tasks/<int:task_id>/priority")
def change_priority(task_id: int) -> Response:
    """A supervisor changes a running task's priority (and so its deadline), with a reason."""
    at = clock.now()
    with caller_transaction() as (session, user):
        body = _body()
        priority = _choice("priority", body.get("priority"), PRIORITIES, required=True)
        supervision.change_priority(session, _policy(), _task_or_404(session, task_id), user, priority,
                                    _text(body, "reason"))
        item = _one_task(session, task_id, at)
    return jsonify(item)


@api.get("/backlog")
def backlog() -> Response:
    """The live board: open work by time left, the overdue list, readers on duty, stations silent today."""
    at = clock.now()
    with caller_transaction() as (session, user):
        if user.role not in ("supervisor", "admin"):
            raise Problem(403, "the live board is for supervisors")
        body = live.board(session, _policy(), visible_tasks(session, user), subtree_ids(session, user.site_id), at)
    return jsonify(body)


@api.get("/studies/<study_uid>")
def study_status(study_uid: str) -> Response:
    """The study, its status, the tasks the caller may see and their timeline; the view is audited."""
    at = clock.now()
    with caller_transaction() as (session, user):
        study = _visible_study(session, user, study_uid)
        read = _read_task(session, study)
        rows = _task_rows(session, and_(ReadingTask.study_pk == study.id, visible_tasks(session, user)))
        body = {
            "status": STUDY_STATUS[read.state if read else None],
            "study": _study_item(session, study),
            "tasks": [_task_item(row, at) for row in rows],
            "timeline": _timeline(session, [row.ReadingTask.id for row in rows], user.role == "station"),
        }
        audit.record(session, user.name, "study.viewed", "study", study_uid)
    return jsonify(body)


@api.get("/turnaround")
def turnaround() -> Response:
    """Turnaround and backlog over the tasks the caller may see."""
    at = clock.now()
    with caller_transaction() as (session, user):
        filters = turnaround_filters(session, user)
        body = figures(session, filters, visible_tasks(session, user), at, _policy().timezone,
                       _int_arg("breaches", BREACHES_SHOWN, 0, 10000), current_app.extensions["telerad.figures_cache"])
    return jsonify(body)


def turnaround_filters(session: Session, user: User) -> Filters:
    """The turnaround filters of the request's query (``site``, ``centre``, ``modality``, ``priority``,
    ``reader``, ``since``, ``until``), each checked; a 400 problem names the first bad one."""
    site = _site_arg(session)
    centre = _site_arg(session, "centre")
    filters = Filters(
        site=site.code if site else None,
        centre=centre.code if centre else None,
        modality=_choice("modality", request.args.get("modality"), MODALITIES),
        priority=_choice("priority", request.args.get("priority"), PRIORITIES),
        reader=_figures_reader(user),
        since=_time_arg("since"),
        until=_time_arg("until"),
    )
    if filters.since and filters.until and filters.until <= filters.since:
        raise _bad("until", "must be later than since")
    return filters


@api.get("/openapi.json")
def openapi() -> Response:
    """This API described as OpenAPI 3.1 (no token needed)."""
    return jsonify(OPENAPI)


# --- errors --------------------------------------------------------------------------------------


@api.errorhandler(ClaimError)
@api.errorhandler(ConsultError)
def _on_refusal(exc: ClaimError | ConsultError) -> Response:
    return problem_response(exc.status, str(exc))


@api.errorhandler(SupervisionError)
def _on_supervision(exc: SupervisionError) -> Response:
    extra = {"parameter": exc.parameter} if exc.parameter else {}
    return problem_response(exc.status, str(exc), **extra)


@api.app_errorhandler(HTTPException)
def _on_routing(exc: HTTPException) -> Response | HTTPException:
    """Unknown paths and methods under ``/api/v1`` (found before any blueprint) as problem details too."""
    return http_problem(exc) if (request.path + "/").startswith(f"{api.url_prefix}/") else exc

