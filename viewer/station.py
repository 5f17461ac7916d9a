"""The station page: the studies a village or township station sent, newest first, with their status, the time
left before the deadline, urgency marks, and browser upload of a study folder.

A station sees what it and the sites below it sent; a supervisor or administrator may look at any station of
their centre (``?site=CODE``). What is shown is asked of :mod:`reading_queue.access` (``visible_studies``).
``static/station.js`` marks urgency through ``POST /api/v1/studies/{uid}/urgency`` and uploads by STOW-RS
(``POST /dicomweb/studies``, PS3.18 10.5).

Once a study's report is final, its row links to the signed PDF (``/station/reports/<study_uid>.pdf``, served
here to whoever may see the study: the PDF exactly as signed, to view and print in the browser) and shows how
each delivery of the report went (:mod:`reports.delivery`): being sent, sent, or not sent yet and why.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from pacs_node.index import Patient, Study, StudyState
from pacs_node.node import storage_for
from reading_queue.access import may_read_report, visible_studies
from reading_queue.tasks import PRIORITIES, STUDY_STATUS, ReadingTask, TaskState, UrgencyMark
from reports.models import CriticalNotice, DeliveryState, Report, ReportDelivery, ReportSignature, ReportState
from telerad import audit, clock
from telerad.auth import caller, user_in
from telerad.sites import Site, subtree_ids
from telerad.users import User
from viewer.worklist import language, local_time, patient_name, sex_age, site_name, time_left

station = Blueprint("station", __name__)
log = logging.getLogger(__name__)

PAGE_SIZE = 25
VIEWING_ROLES = ("station", "supervisor", "admin")
#: What a station's study goes through: "delivered" once the signed report reached the station's own system.
STEPS = ("received", "waiting", "being_read", "reported", "delivered")
RUNNING = (TaskState.OPEN.value, TaskState.CLAIMED.value)
#: A report whose PDF the station may open: signed for good (an addendum keeps it so).
VIEWABLE = (ReportState.FINAL.value, ReportState.AMENDED.value)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery of a study's latest signed report, as the station page says it."""

    channel: str
    state: str
    text: str
    detail: str = ""  # the technical reason, for whoever looks after the station's system


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
    report_url: str | None = None
    deliveries: tuple[DeliveryRow, ...] = ()


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
    reports = _reports(session, [record[0].id for record in found[:PAGE_SIZE]])
    rows = [_row(user, *record, at, *reports.get(record[0].id, (None, ()))) for record in found[:PAGE_SIZE]]
    return rows, len(found) > PAGE_SIZE


def _reports(session: Session, study_pks: list[int]) -> dict[int, tuple[str | None, tuple[DeliveryRow, ...]]]:
    """For each study with a final report: the link to its signed PDF and the deliveries of its latest signature."""
    if not study_pks:
        return {}
    found = session.execute(
        select(Report.study_pk, Report.id, Study.study_uid)
        .join(Study, Study.id == Report.study_pk)
        .where(Report.study_pk.in_(study_pks), Report.state.in_(VIEWABLE))
    ).all()
    if not found:
        return {}
    by_report = {report_id: (study_pk, uid) for study_pk, report_id, uid in found}
    latest: dict[int, int] = {}
    for report_id, signature_id in session.execute(
        select(ReportSignature.report_id, ReportSignature.id)
        .where(ReportSignature.report_id.in_(by_report), ReportSignature.pdf_key.is_not(None))
        .order_by(ReportSignature.signed_at, ReportSignature.id)
    ):
        latest[report_id] = signature_id
    deliveries: dict[int, list[DeliveryRow]] = {}
    for delivery in session.scalars(
        select(ReportDelivery).where(ReportDelivery.signature_id.in_(latest.values())).order_by(ReportDelivery.id)
    ):
        deliveries.setdefault(delivery.report_id, []).append(_delivery_row(delivery))
    return {
        study_pk: (url_for("station.report_pdf", study_uid=uid) if report_id in latest else None,
                   tuple(deliveries.get(report_id, ())))
        for report_id, (study_pk, uid) in by_report.items()
    }


def _delivery_row(delivery: ReportDelivery) -> DeliveryRow:
    channel = {
        "dicom-pdf": _("Report PDF to the station's system"), "dicom-sr": _("Report text to the station's system"),
        "webhook": _("Report to the connected system"),
    }.get(delivery.channel, delivery.channel)
    destination = delivery.target.partition("@")[0] if delivery.channel != "webhook" else ""
    detail = ""
    if delivery.state == DeliveryState.SENT:
        text = _("sent to {destination} at {time}").format(destination=destination or "—",
                                                           time=local_time(delivery.sent_at))
    elif delivery.state == DeliveryState.FAILED:
        text, detail = _("could not be sent: {reason}").format(reason=_reason(delivery.last_error)), delivery.last_error
    elif delivery.attempts == 0:
        text = _("being sent…")
    else:
        text = _("not sent yet ({reason}); trying again at {time}").format(
            reason=_reason(delivery.last_error), time=local_time(delivery.next_attempt_at)
        )
        detail = delivery.last_error
    return DeliveryRow(delivery.channel, delivery.state, f"{channel}: {text}", detail)


def _reason(error: str) -> str:
    """Why a delivery did not go, in the interface's words (the technical text is shown beside it)."""
    reasons = (
        ("no return address", _("no return address is configured for this station")),
        ("connection refused", _("the station's DICOM receiver is not running")),
        ("no answer from", _("the station cannot be reached over the network")),
        ("cannot connect", _("the station cannot be reached over the network")),
        ("association rejected", _("the station's system refused the connection")),
        ("association with", _("the connection broke off")),
        ("no C-STORE response", _("the connection broke off")),
        ("status 0x", _("the station's system refused the report")),
        ("webhook:", _("the connected system did not accept it")),
    )
    for start, words in reasons:
        if start in error:
            return words
    if "does not accept" in error:
        return _("the station's system does not accept this kind of report")
    if "PDF" in error or "cannot build" in error:
        return _("the report file could not be prepared")
    return _("sending failed")


def _row(user: User, study: Study, patient: Patient, name: str, name_en: str | None, task: ReadingTask | None,
         marked: str | None, at: datetime, report_url: str | None = None,
         deliveries: tuple[DeliveryRow, ...] = ()) -> StudyRow:
    status = STUDY_STATUS[task.state if task is not None else None]
    if status == "reported" and any(d.channel == "dicom-pdf" and d.state == DeliveryState.SENT for d in deliveries):
        status = "delivered"
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
        report_url=report_url, deliveries=deliveries,
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
        critical = _unacknowledged_critical(session, site or session.get(Site, user.site_id))
        sites = _site_choices(session, user)
        own = session.get(Site, user.site_id)
        shown_site = site_name(site.name, site.name_en) if site else site_name(own.name, own.name_en)
    args: dict[str, Any] = {"site": site.code} if site else {}
    return render_template(
        "station.html", rows=rows, more=more, page=page_number, args=args, sites=sites,
        chosen=site.code if site else None, shown_site=shown_site, steps=STEPS, priorities=PRIORITIES,
        may_upload=who.role == "station", critical=critical, may_acknowledge=who.role == "station",
        script={"language": language(), "mayUpload": who.role == "station", "stow": "/dicomweb/studies",
                "idleMinutes": current_app.extensions["telerad.config"].web.session_minutes},
    )


@dataclass(frozen=True)
class CriticalLine:
    """A critical finding the station has not yet acknowledged, as the banner shows it."""

    study_uid: str
    patient: str
    category: str
    notified: str


def _unacknowledged_critical(session: Session, site: Site) -> list[CriticalLine]:
    """The critical findings told to ``site`` and the sites below it that nobody there has acknowledged yet."""
    names = {
        item.code: (item.name_en if language() == "en" and item.name_en else item.name)
        for item in current_app.extensions["telerad.config"].reports.critical_categories
    }
    rows = session.execute(
        select(Study.study_uid, Patient.name, CriticalNotice.category, CriticalNotice.notified_at)
        .join(Study, Study.id == CriticalNotice.study_pk)
        .join(Patient, Patient.id == Study.patient_pk)
        .where(CriticalNotice.site_id.in_(subtree_ids(session, site.id)), CriticalNotice.acknowledged_at.is_(None))
        .order_by(CriticalNotice.notified_at)
    ).all()
    return [
        CriticalLine(uid, patient_name(name), names.get(category, category), local_time(notified))
        for uid, name, category, notified in rows
    ]


@station.get("/station/reports/<study_uid>.pdf")
@login_required
def report_pdf(study_uid: str) -> Response:
    """The study's signed report PDF, byte for byte as signed (its latest signed version), to view and print.

    404 unless the report is final and the caller may read it (:func:`reading_queue.access.may_read_report`):
    whether another station's study exists is not revealed. Every opening is audited.
    """
    with _sessions()() as session, session.begin():
        user = user_in(session)
        study = session.scalar(select(Study).where(Study.study_uid == study_uid))
        report = session.scalar(select(Report).where(Report.study_pk == study.id)) if study is not None else None
        if report is None or report.state not in VIEWABLE or not may_read_report(session, user, study, report.state):
            abort(404)
        signature = session.scalar(
            select(ReportSignature)
            .where(ReportSignature.report_id == report.id, ReportSignature.pdf_key.is_not(None))
            .order_by(ReportSignature.signed_at.desc(), ReportSignature.id.desc())
            .limit(1)
        )
        if signature is None:
            abort(404)
        try:
            pdf = storage_for(current_app.extensions["telerad.config"]).read(signature.pdf_key)
        except OSError as exc:
            log.error("signed PDF %s of study %s cannot be read: %s", signature.pdf_key, study_uid, exc)
            abort(503)
        if signature.pdf_sha256 and hashlib.sha256(pdf).hexdigest() != signature.pdf_sha256:
            log.error("signed PDF %s of study %s does not match its recorded SHA-256", signature.pdf_key, study_uid)
            abort(500)
        audit.record(session, user.name, "report.viewed", "study", study_uid, via="station", signature_id=signature.id)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="report-{study_uid}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
