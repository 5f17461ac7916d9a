"""The worklist page: the tasks a reader, consultant or supervisor may see, by deadline.

The server renders the first page (it works without JavaScript); ``static/worklist.js`` then refreshes it from
``GET /api/v1/worklist`` and claims through ``POST /api/v1/tasks/{id}/claim``. The few things a row shows that the
JSON API does not carry (the patient's sex and age, the study description, since when a task is held) come from
:func:`details`. Who sees which task is asked of :mod:`reading_queue.access`; claiming goes through
:mod:`reading_queue.claims`, as the API's does.

The display helpers here (:func:`time_left`, :func:`patient_name`, :func:`sex_age`, :func:`local_time`) are shared
with the station page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, flash, get_flashed_messages, jsonify, redirect, render_template
from flask import request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from pacs_node.index import Patient, Study
from reading_queue import claims
from reading_queue.access import visible_tasks
from reading_queue.claims import ClaimError
from reading_queue.notify import Notification
from reading_queue.tasks import MODALITIES, PRIORITIES, STUDY_STATUS, ReadingTask, TaskEvent, TaskState
from reports.quality import awaiting_count
from telerad import clock
from telerad.auth import caller, user_in
from telerad.sites import Site, subtree_ids
from telerad.users import User

worklist = Blueprint("worklist", __name__)

PAGE_SIZE = 50
MINE_LIMIT = 500  # "mine" is one page: nobody holds more
NOTICES_SHOWN = 50
VIEWS = ("all", "open", "mine")  # all unfinished work / not yet claimed / held by or assigned to me
RUNNING = (TaskState.OPEN.value, TaskState.CLAIMED.value)
CLAIMING_ROLES = ("reader", "consultant")
ERROR_STATUSES = (401, 403, 404, 409)

_holder = aliased(User, name="holder")
_assignee = aliased(User, name="assignee")


# --- display helpers (shared with the station page) -------------------------------------------------------------


def time_left(due_at: datetime | None, at: datetime) -> tuple[str, str] | None:
    """Text and urgency class (overdue, soon, near, later) of the time until ``due_at`` — as ``timeLeft`` in
    ``static/common.js`` computes it, so the server's first render and the browser's updates agree."""
    if due_at is None:
        return None
    minutes = round((due_at - at).total_seconds() / 60)
    whole = abs(minutes)
    if whole >= 60:
        text = _("{h} h {m} min").format(h=whole // 60, m=whole % 60)
    else:
        text = _("{m} min").format(m=whole)
    if minutes < 0:
        return _("overdue by {time}").format(time=text), "overdue"
    return text, "soon" if minutes < 60 else "near" if minutes < 240 else "later"


def language() -> str:
    """The request's interface language (``zh`` or ``en``)."""
    locale = get_locale()
    return locale.language if locale is not None else "zh"


def patient_name(name: str | None) -> str:
    """A DICOM person name (PS3.5 6.2: ``Family^Given`` groups split by ``=``) for reading: the ideographic
    group in Chinese when there is one, else the alphabetic one, components joined."""
    groups = (name or "").split("=")
    ideographic = groups[1] if len(groups) > 1 else ""
    if language() == "zh" and ideographic.strip("^ "):
        return "".join(part for part in ideographic.split("^") if part)
    shown = " ".join(part for part in groups[0].split("^") if part)
    return shown or "".join(part for part in ideographic.split("^") if part)


def _age(birth_date: str, on: str | None, today: date) -> str:
    """The age (DICOM dates ``YYYYMMDD``) on the study date, else today: years, months for infants, days for the
    newborn; empty when the birth date is unknown."""
    try:
        born = datetime.strptime(birth_date, "%Y%m%d").date()
    except ValueError:
        return ""
    try:
        then = datetime.strptime(on or "", "%Y%m%d").date()
    except ValueError:
        then = today
    months = (then.year - born.year) * 12 + then.month - born.month - (then.day < born.day)
    if months < 0:
        return ""
    if months >= 24:
        return _("{n} y").format(n=months // 12)
    if months >= 1:
        return _("{n} mo").format(n=months)
    return _("{n} d").format(n=(then - born).days)


def sex_age(sex: str | None, birth_date: str | None, study_date: str | None, at: datetime) -> str:
    """The patient's sex and age as one short line, e.g. ``男 · 45岁``."""
    sexes = {"M": _("Male"), "F": _("Female"), "O": _("Other sex")}
    parts = [sexes.get((sex or "").strip().upper(), ""), _age(birth_date or "", study_date, at.date())]
    return " · ".join(part for part in parts if part)


def local_time(value: datetime | None, with_date: bool = True) -> str:
    """A moment in the service's time zone, as ``MM-DD HH:MM`` (or ``HH:MM``)."""
    if value is None:
        return ""
    zone = ZoneInfo(current_app.extensions["telerad.config"].reading.timezone)
    return value.astimezone(zone).strftime("%m-%d %H:%M" if with_date else "%H:%M")


def site_name(name: str, name_en: str | None) -> str:
    """A site's name in the interface's language."""
    return name_en or name if language() == "en" else name


@worklist.app_template_global()
def priority_label(priority: str | None) -> str:
    """A priority as people say it."""
    labels = {"STAT": _("STAT"), "URGENT": _("Urgent"), "ROUTINE": _("Routine")}
    return labels.get(priority or "", priority or "")


@worklist.app_template_global()
def status_label(status: str | None) -> str:
    """A study's status (:data:`reading_queue.tasks.STUDY_STATUS`) or a task's state (``None``: no task yet), as
    people say it."""
    labels = {
        "received": _("Received"), "waiting": _("Waiting for a reader"), "being_read": _("Being read"),
        "reported": _("Reported"), "delivered": _("Delivered"), "cancelled": _("Cancelled"),
    }
    shown = STUDY_STATUS.get(status, status)  # a task state becomes the study status it means
    return labels.get(shown, shown or "")


@worklist.app_template_global()
def notice_label(kind: str) -> str:
    """What kind of notice the service-level clock sent."""
    labels = {"reminder": _("Reminder: the deadline is near"), "escalation": _("Escalated: offered to every reader"),
              "breach": _("Deadline passed"), "reassigned": _("Given to you by the supervisor"),
              "peer_review": _("A report to peer review"),
              "peer_review_discrepancy": _("Peer review found a significant discrepancy")}
    return labels.get(kind, _("Notice"))


@worklist.app_template_global()
def claim_error(status: int) -> str:
    """Why a claim was refused, by the HTTP status the claim answered."""
    texts = {
        401: _("You have been signed out. Sign in again, then try once more."),
        403: _("This study is not yours to claim: it is offered to another reader, or you do not read this kind."),
        404: _("This study is no longer on the worklist."),
        409: _("Someone else has just claimed this study."),
    }
    return texts.get(status, _("Something went wrong. Please try again."))


def _sessions() -> sessionmaker:
    return current_app.extensions["telerad.sessions"]


# --- what the page shows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The worklist's filters, kept as query parameters so that a filtered view can be bookmarked.

    Unknown values are ignored (an old bookmark still opens the worklist) rather than refused.
    """

    modality: str | None = None
    priority: str | None = None
    site: str | None = None
    view: str = "all"
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        page = args.get("page", "1")
        return cls(
            modality=args.get("modality") if args.get("modality") in MODALITIES else None,
            priority=args.get("priority") if args.get("priority") in PRIORITIES else None,
            site=args.get("site") or None,
            view=args.get("view") if args.get("view") in VIEWS else "all",
            page=int(page) if page.isdigit() and 0 < int(page) < 10_000 else 1,
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query parameters of this view (with ``changes``), defaults left out."""
        chosen = replace(self, **changes)
        values = {"modality": chosen.modality, "priority": chosen.priority, "site": chosen.site,
                  "view": chosen.view if chosen.view != "all" else None, "page": chosen.page if chosen.page > 1 else None}
        return {name: value for name, value in values.items() if value is not None}

    @property
    def limit(self) -> int:
        return MINE_LIMIT if self.view == "mine" else PAGE_SIZE

    @property
    def offset(self) -> int:
        return 0 if self.view == "mine" else (self.page - 1) * PAGE_SIZE


@dataclass(frozen=True)
class Row:
    """One task as the worklist shows it."""

    task_id: int
    kind: str
    state: str
    study_uid: str
    priority: str
    modality: str
    site: str
    patient: str
    sex_age: str
    description: str
    due_at: str
    left: tuple[str, str] | None
    holder: str | None
    held_since: str
    held_by_me: bool
    assignee: str | None
    escalated: bool
    breached: bool
    reminders_sent: int
    may_claim: bool
    badges: list[tuple[str, str]] = field(default_factory=list)

    def details(self) -> dict[str, str]:
        """What :func:`details` gives the page's script for this row."""
        return {"patient": self.patient, "sex_age": self.sex_age, "description": self.description,
                "held_since": self.held_since}


def _conditions(session: Session, user: User, filters: Filters) -> list[ColumnElement[bool]]:
    conditions = [visible_tasks(session, user)]
    if filters.modality:
        conditions.append(ReadingTask.modality == filters.modality)
    if filters.priority:
        conditions.append(ReadingTask.priority == filters.priority)
    if filters.site:
        conditions.append(ReadingTask.source_site_id.in_(select(Site.id).where(Site.code == filters.site)))
    if filters.view == "open":
        conditions.append(ReadingTask.state == TaskState.OPEN)
    else:
        conditions.append(ReadingTask.state.in_(RUNNING))
    if filters.view == "mine":
        conditions.append(or_(ReadingTask.holder_id == user.id,
                              and_(ReadingTask.holder_id.is_(None), ReadingTask.assignee_id == user.id)))
    return conditions


def _held_since(session: Session, task_ids: Sequence[int]) -> dict[int, datetime]:
    """When each task's current claim began (its latest "claimed" event; renewals do not move it)."""
    if not task_ids:
        return {}
    rows = session.execute(
        select(TaskEvent.task_id, func.max(TaskEvent.at))
        .where(TaskEvent.task_id.in_(task_ids), TaskEvent.kind == "claimed")
        .group_by(TaskEvent.task_id)
    ).all()
    return dict(rows)


def _rows(session: Session, user: User, where: Sequence[ColumnElement[bool]], at: datetime,
          limit: int | None = None, offset: int = 0) -> list[Row]:
    query = (
        select(ReadingTask, Patient, Study.description, Study.study_date, Site.name, Site.name_en,
               _holder.id, _holder.name, _holder.display_name, _assignee.id, _assignee.name, _assignee.display_name)
        .join(Study, Study.id == ReadingTask.study_pk)
        .join(Patient, Patient.id == Study.patient_pk)
        .join(Site, Site.id == ReadingTask.source_site_id)
        .outerjoin(_holder, _holder.id == ReadingTask.holder_id)
        .outerjoin(_assignee, _assignee.id == ReadingTask.assignee_id)
        .where(*where)
        .order_by(ReadingTask.due_at, ReadingTask.id)
        .offset(offset)
    )
    found = session.execute(query.limit(limit) if limit is not None else query).all()
    since = _held_since(session, [row[0].id for row in found])
    return [_row(user, record, since.get(record[0].id), at) for record in found]


def _row(user: User, record: Any, since: datetime | None, at: datetime) -> Row:
    (task, patient, description, study_date, name, name_en,
     holder_id, holder_name, holder_display, assignee_id, assignee_name, assignee_display) = record
    held = holder_id is not None and (task.lease_until is None or task.lease_until > at)
    running = task.state in RUNNING
    free = not held or holder_id == user.id
    offered = assignee_id in (None, user.id) or task.escalated_at is not None
    badges = []
    if task.breached_at is not None:
        badges.append(("breached", _("Deadline passed")))
    if task.escalated_at is not None:
        badges.append(("escalated", _("Escalated")))
    if task.reminders_sent:
        badges.append(("reminded", _("Reminded ×{n}").format(n=task.reminders_sent)))
    return Row(
        task_id=task.id, kind=task.kind, state=task.state, study_uid=task.study_uid, priority=task.priority,
        modality=task.modality, site=site_name(name, name_en), patient=patient_name(patient.name),
        sex_age=sex_age(patient.sex, patient.birth_date, study_date, at), description=description or "",
        due_at=task.due_at.isoformat(), left=time_left(task.due_at, at) if running else None,
        holder=(holder_display or holder_name) if held else None,
        held_since=local_time(since) if held and since else "", held_by_me=held and holder_id == user.id,
        assignee=assignee_display or assignee_name, escalated=task.escalated_at is not None,
        breached=task.breached_at is not None, reminders_sent=task.reminders_sent,
        may_claim=running and user.role in CLAIMING_ROLES and free and offered, badges=badges,
    )


def _notices(session: Session, user: User) -> list[dict[str, Any]]:
    """The caller's unread in-app notices, newest first (as the API's ``notifications``)."""
    rows = session.scalars(
        select(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(NOTICES_SHOWN)
    )
    return [{"id": n.id, "task_id": n.task_id, "kind": n.kind, "message": n.message,
             "created_at": n.created_at.isoformat(), "time": local_time(n.created_at)} for n in rows]


def _site_choices(session: Session, user: User) -> list[tuple[str, str]]:
    """The sending sites a caller may filter on: those below their centre."""
    ids = subtree_ids(session, user.site_id) - {user.site_id}
    if not ids:
        return []
    sites = session.execute(select(Site.code, Site.name, Site.name_en).where(Site.id.in_(ids)).order_by(Site.code))
    return [(code, site_name(name, name_en)) for code, name, name_en in sites]


def _safe_return(target: str | None) -> str:
    """Only the worklist itself may be returned to after a claim fails."""
    if target and target.startswith("/worklist") and "\\" not in target and "//" not in target:
        return target
    return url_for("worklist.page")


# --- views ------------------------------------------------------------------------------------------------------


@worklist.get("/worklist")
@login_required
def page() -> Response | str:
    """The worklist: time left, priority, site, modality, patient, study, holder and state; filters; claims."""
    who = caller()
    if who.role == "station":
        return redirect(url_for("station.page"))
    filters = Filters.from_args(request.args)
    at = clock.now()
    with _sessions()() as session:
        user = user_in(session)
        sites = _site_choices(session, user)
        if filters.site not in {code for code, _name in sites}:
            filters = replace(filters, site=None)
        fetched = _rows(session, user, _conditions(session, user, filters), at, filters.limit + 1, filters.offset)
        rows, more = fetched[: filters.limit], len(fetched) > filters.limit
        notices = _notices(session, user)
        reviews = awaiting_count(session, user)
    on_page = {row.task_id: row for row in rows}
    for notice in notices:
        row = on_page.get(notice["task_id"])
        notice["about"] = f"{row.patient} · {row.modality}" if row else _("Task {id}").format(id=notice["task_id"])
    modalities = [m for m in MODALITIES if m in who.modalities] if who.role in CLAIMING_ROLES else list(MODALITIES)
    errors = [int(s) for s in get_flashed_messages(category_filter=["claim-error"]) if s.isdigit()]
    script = {
        "me": who.name, "language": language(), "view": filters.view,
        "filters": {"modality": filters.modality, "priority": filters.priority, "site": filters.site},
        "limit": filters.limit, "offset": filters.offset, "mayClaim": who.role in CLAIMING_ROLES,
        "details": url_for("worklist.details"), "timeZone": current_app.extensions["telerad.config"].reading.timezone,
        "idleMinutes": current_app.extensions["telerad.config"].web.session_minutes,
    }
    return render_template(
        "worklist.html", rows=rows, more=more, notices=notices, filters=filters, sites=sites, modalities=modalities,
        priorities=PRIORITIES, script=script, errors=errors, updated=local_time(at, with_date=False), reviews=reviews,
    )


@worklist.get("/worklist/details")
@login_required
def details() -> Response:
    """Per task id (``?task=1&task=2``): the formatted patient, sex and age, study description and since when it is
    held — the parts of a row the JSON API's worklist does not carry. Tasks the caller may not see are left out."""
    ids = [int(value) for value in request.args.getlist("task") if value.isdigit()][:MINE_LIMIT]
    if not ids:
        return jsonify({})
    at = clock.now()
    with _sessions()() as session:
        user = user_in(session)
        rows = _rows(session, user, [visible_tasks(session, user), ReadingTask.id.in_(ids)], at)
    return jsonify({str(row.task_id): row.details() for row in rows})


@worklist.post("/worklist/tasks/<int:task_id>/claim")
@login_required
def claim(task_id: int) -> Response:
    """Claim a task and open it (the form the page falls back on without JavaScript; CSRF-checked like every
    browser POST). A refusal goes back to the worklist with a message."""
    policy = current_app.extensions["telerad.config"].reading
    try:
        with _sessions()() as session, session.begin():
            task = claims.claim(session, policy, task_id, user_in(session), clock.now())
            study_uid = task.study_uid
    except ClaimError as refused:
        flash(str(refused.status if refused.status in ERROR_STATUSES else 500), "claim-error")
        return redirect(_safe_return(request.form.get("back")))
    return redirect(url_for("study.page", study_uid=study_uid))
