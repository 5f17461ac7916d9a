"""The station page: the studies a village or township station sent, newest first, with their status, the time
left before the deadline, urgency marks, and browser upload of a study folder.

A station sees what it and the sites below it sent; a supervisor or administrator may look at any station of
their centre (``?site=CODE``). What is shown is asked of :mod:`reading_queue.access` (``visible_studies``).
``static/station.js`` marks urgency through ``POST /api/v1/studies/{uid}/urgency`` and uploads by STOW-RS
(``POST /dicomweb/studies``, PS3.18 10.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from pacs_node.index import Patient, Study, StudyState
from reading_queue.access import visible_studies
from reading_queue.tasks import PRIORITIES, STUDY_STATUS, ReadingTask, TaskState, UrgencyMark
from telerad import clock
from telerad.auth import caller, user_in
from telerad.sites import Site, subtree_ids
from telerad.users import User
from viewer.worklist import language, local_time, patient_name, sex_age, site_name, time_left

station = Blueprint("station", __name__)

PAGE_SIZE = 25
VIEWING_ROLES = ("station", "supervisor", "admin")
#: What a station's study goes through; "delivered" arrives with the reports work (nothing reaches it yet).
STEPS = ("received", "waiting", "being_read", "reported", "delivered")
RUNNING = (TaskState.OPEN.value, TaskState.CLAIMED.value)


@dataclass(frozen=True)
class StudyRow:
    """One study as the station page shows it."""

    study_uid: str
    patient: str
    sex_age: str
    patient_id: str
    modalities: str
    description: str
    site: str
    received_at: str
    arriving: bool
    instances: int
    status: str
    step: int
    due_at: str | None
    left: tuple[str, str] | None
    priority: str | None
    may_mark: bool


def _sessions() -> sessionmaker:
    return current_app.extensions["telerad.sessions"]


def _page_number(args: Mapping[str, str]) -> int:
    raw = args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def _scope(session: Session, user: User, code: str | None) -> Site | None:
    """The site asked for with ``?site=``: the caller's own site or one below it, else 404 (whether the code is
    unknown or another station's: existence is not revealed)."""
    if not code:
        return None
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None or site.id not in subtree_ids(session, user.site_id):
        abort(404)
    return site


def _site_choices(session: Session, user: User) -> list[tuple[str, str]]:
    """The sites the caller may look at: their own and those below it (only when there are some below)."""
    ids = subtree_ids(session, user.site_id)
    if len(ids) < 2:
        return []
    sites = session.execute(select(Site.code, Site.name, Site.name_en).where(Site.id.in_(ids)).order_by(Site.code))
    return [(code, site_name(name, name_en)) for code, name, name_en in sites]


def _rows(session: Session, user: User, site: Site | None, page: int, at: datetime) -> tuple[list[StudyRow], bool]:
    conditions = [visible_studies(session, user)]
    if site is not None:
        conditions.append(Study.site_id.in_(subtree_ids(session, site.id)))
    read = aliased(ReadingTask, name="read_task")  # the access rule's own subquery on tasks stays uncorrelated
    query = (
        select(Study, Patient, Site.name, Site.name_en, read, UrgencyMark.priority)
        .join(Patient, Patient.id == Study.patient_pk)
        .join(Site, Site.id == Study.site_id)
        .outerjoin(read, and_(read.study_pk == Study.id, read.kind == "read"))
        .outerjoin(UrgencyMark, UrgencyMark.study_uid == Study.study_uid)
        .where(*conditions)
        .order_by(Study.first_received_at.desc(), Study.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    )
    found = session.execute(query).all()
    rows = [_row(user, *record, at) for record in found[:PAGE_SIZE]]
    return rows, len(found) > PAGE_SIZE


def _row(user: User, study: Study, patient: Patient, name: str, name_en: str | None, task: ReadingTask | None,
         marked: str | None, at: datetime) -> StudyRow:
    status = STUDY_STATUS[task.state if task is not None else None]
    running = task is not None and task.state in RUNNING
    priority = task.priority if task is not None else marked
    open_to_marks = task is None or running
    return StudyRow(
        study_uid=study.study_uid, patient=patient_name(patient.name),
        sex_age=sex_age(patient.sex, patient.birth_date, study.study_date, at), patient_id=patient.patient_id,
        modalities=" ".join(m for m in study.modalities.split("\\") if m), description=study.description,
        site=site_name(name, name_en), received_at=local_time(study.first_received_at),
        arriving=study.state == StudyState.RECEIVING, instances=study.num_instances, status=status,
        step=STEPS.index(status) if status in STEPS else -1,
        due_at=task.due_at.isoformat() if running else None, left=time_left(task.due_at, at) if running else None,
        priority=priority, may_mark=user.role == "station" and open_to_marks and priority != "STAT",
    )


@station.get("/station")
@login_required
def page() -> Response | str:
    """A station's studies, newest first, paged; supervisors and administrators may pick a station."""
    who = caller()
    if who.role not in VIEWING_ROLES:
        return redirect(url_for("worklist.page"))
    page_number = _page_number(request.args)
    at = clock.now()
    with _sessions()() as session:
        user = user_in(session)
        site = _scope(session, user, request.args.get("site"))
        rows, more = _rows(session, user, site, page_number, at)
        sites = _site_choices(session, user)
        own = session.get(Site, user.site_id)
        shown_site = site_name(site.name, site.name_en) if site else site_name(own.name, own.name_en)
    args: dict[str, Any] = {"site": site.code} if site else {}
    return render_template(
        "station.html", rows=rows, more=more, page=page_number, args=args, sites=sites,
        chosen=site.code if site else None, shown_site=shown_site, steps=STEPS, priorities=PRIORITIES,
        may_upload=who.role == "station",
        script={"language": language(), "mayUpload": who.role == "station", "stow": "/dicomweb/studies",
                "idleMinutes": current_app.extensions["telerad.config"].web.session_minutes},
    )
