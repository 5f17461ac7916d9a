"""Writing a report and taking it through its states.

A study has one report (:class:`~reports.models.Report`). Its states follow
FHIR DiagnosticReport.status (and DICOM SR's completion and verification):

- ``draft``: being written. Until the first save the draft is only proposed
  (:func:`proposal`): the template that suits the study (:func:`reports.templates.choose`),
  its default text and, for a 12-lead ECG, the rate, intervals and axis
  prefilled from Telerad's own measurements (else the device's). Every save
  (:func:`save_draft`) carries the ``revision`` it was made from; a stale one is
  refused (409) with the current revision, so two editors never overwrite each
  other unseen.
- ``preliminary``: signed by its author where a countersignature is needed: the
  author is a junior reader (not ``expert``) and the reading centre is listed
  in ``reports.countersign_sites``. Nothing changes it but a countersignature.
- ``final``: signed (and countersigned where needed). Never changed again.
- ``amended``: final with one or more signed addenda, each a new part shown
  beside the untouched original.

Only the reader holding the study's reading task, or the consultant holding a
consult on it, writes the draft; only the reading task's holder signs it as
author; an expert of the modality at or above the centre countersigns; the
consultant co-signs (role ``cosign``) into the same report, or adds an
addendum, which also answers the consult (:func:`reading_queue.consult.answer_consult`).
Who may do what is asked of :mod:`reading_queue.access`.

Signing is :func:`reports.signing.sign` (password check, canonical form,
signed PDF); here the states change around it, in the caller's transaction, so
a wrong password (:class:`reports.signing.WrongPassword`) leaves everything as
it was. When a report becomes final, or gets a co-signature or an addendum once
final, its task is marked signed (:func:`reading_queue.signing.mark_signed`:
it leaves the worklist, the service-level clock stops) and ``report.signed``
is published for delivery. A critical finding is told to the station at the
first signature (:mod:`reports.critical`). Every save and signature is on the
task's timeline and in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pacs_node.index import Instance, Series, Study
from pacs_node.node import storage_for
from pacs_node.storage import FileStorage
from reading_queue import access
from reading_queue.consult import answer_consult
from reading_queue.notify import Notifier, configured_notifier
from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask, TaskState, primary_modality, record
from reports import critical, signing
from reports.models import Report, ReportAddendum, ReportSignature, ReportState
from reports.templates import PREFILLS, Template, choose, load_templates
from telerad import audit, events
from telerad.config import Config
from telerad.sites import Site
from telerad.users import User
from viewer.ecg_measurements import computed_for
from viewer.jobs import ECG_SOP_CLASSES

SIGNED_FOR_GOOD = (ReportState.FINAL, ReportState.AMENDED)
EDITABLE = ("template_id", "fields", "findings", "impression", "critical", "critical_category")
TEXT_LIMIT = 20000
#: The device's measurement names (``viewer.ecg.device_measurements``) for Telerad's.
_DEVICE_NAMES = {"heart_rate": "hr", "rr_ms": "rr", "pr_ms": "pr", "qrs_ms": "qrs", "qt_ms": "qt",
                 "qtc_bazett_ms": "qtc", "p_axis": "p_axis", "qrs_axis": "qrs_axis", "t_axis": "t_axis"}


class ReportError(Exception):
    """A report cannot be written or signed as asked; ``status`` is the HTTP status, ``extra`` problem members."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


@dataclass
class Context:
    """What writing and signing work with: the configuration, the storage area, the templates, the notifiers."""

    config: Config
    storage: FileStorage
    templates: dict[str, Template]
    notifier: Notifier


def context_for(config: Config) -> Context:
    """The context of ``config``: in-app notices, and the webhook where ``reading.webhook_url`` is set."""
    notifier = configured_notifier(config.reading.webhook_url)
    return Context(config, storage_for(config), load_templates(config.reports.templates_dir), notifier)


# --- reading ---------------------------------------------------------------------------------------------------


def report_of(session: Session, study: Study, lock: bool = False) -> Report | None:
    """The study's report, if a draft was ever saved."""
    query = select(Report).where(Report.study_pk == study.id)
    return session.scalar(query.with_for_update() if lock else query)


def read_task(session: Session, study: Study) -> ReadingTask | None:
    """The study's reading task (not a consult)."""
    return session.scalar(select(ReadingTask).where(ReadingTask.study_pk == study.id, ReadingTask.kind == "read"))


def signatures(session: Session, report: Report) -> list[ReportSignature]:
    """The report's signatures, oldest first."""
    return list(session.scalars(
        select(ReportSignature).where(ReportSignature.report_id == report.id).order_by(ReportSignature.id)
    ))


def addenda(session: Session, report: Report) -> list[ReportAddendum]:
    """The report's addenda, oldest first."""
    return list(session.scalars(
        select(ReportAddendum).where(ReportAddendum.report_id == report.id).order_by(ReportAddendum.id)
    ))


def template_of(ctx: Context, template_id: str) -> Template:
    """The template with ``template_id``; a report whose template was removed since is a 409, not a crash."""
    template = ctx.templates.get(template_id)
    if template is None:
        raise ReportError(409, f"the report's template {template_id!r} is no longer installed", template_id=template_id)
    return template


def template_for_study(ctx: Context, session: Session, study: Study, task: ReadingTask | None) -> Template:
    """The template that suits the study: its modality, body parts and descriptions."""
    modality = task.modality if task is not None else primary_modality(study.modalities)
    series = session.execute(select(Series.body_part, Series.description).where(Series.study_pk == study.id)).all()
    chosen = choose(ctx.templates, modality, {part for part, _ in series}, [study.description, *(d for _, d in series)])
    if chosen is None:
        raise ReportError(409, f"no report template is made for {modality}; an administrator can add one "
                               "(reports.templates_dir)")
    return chosen


def ecg_measurements(session: Session, study: Study) -> dict[str, Any] | None:
    """The 12-lead ECG measurements a report is prefilled from: Telerad's own, else the device's.

    ``None`` when the study has no ECG; ``source`` is ``None`` while the ECG is not yet measured.
    """
    sop_uid = session.scalar(
        select(Instance.sop_instance_uid)
        .join(Series, Instance.series_pk == Series.id)
        .where(Series.study_pk == study.id, or_(Series.modality == "ECG", Instance.sop_class_uid.in_(ECG_SOP_CLASSES)))
        .order_by(Instance.id)
        .limit(1)
    )
    if sop_uid is None:
        return None
    row = computed_for(session, sop_uid)
    if row is None:
        return {"sop_instance_uid": sop_uid, "source": None, "values": {}}
    if row.error is None:
        values = {name: _whole(getattr(row, name)) for name in PREFILLS}
        return {"sop_instance_uid": sop_uid, "source": "telerad", "algorithm": row.algorithm, "values": values}
    device = (row.device or {}).get("values", {})
    values = {name: _whole(device[key]["value"]) if key in device else None for name, key in _DEVICE_NAMES.items()}
    if values["heart_rate"] is None and device.get("rr", {}).get("value"):
        values["heart_rate"] = _whole(60000.0 / device["rr"]["value"])  # the rate from the device's RR interval
    return {"sop_instance_uid": sop_uid, "source": "device", "error": row.error, "values": values}


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def prefilled(template: Template, measurements: dict[str, Any] | None) -> dict[str, Any]:
    """The template's field defaults, with the number fields that name a measurement filled from it."""
    fields = template.defaults()
    values = (measurements or {}).get("values", {})
    for field in template.fields:
        if field.prefill is not None and values.get(field.prefill) is not None:
            fields[field.id] = values[field.prefill]
    return fields


def proposal(ctx: Context, session: Session, study: Study, task: ReadingTask | None) -> dict[str, Any]:
    """The content of a new draft, not yet saved: the chosen template, its defaults and the prefilled measurements."""
    template = template_for_study(ctx, session, study, task)
    return {
        "template_id": template.id,
        "fields": prefilled(template, ecg_measurements(session, study)),
        "findings": template.findings,
        "impression": template.impression,
        "critical": False,
        "critical_category": "",
    }


def content(report: Report) -> dict[str, Any]:
    """The editable content of a saved report."""
    return {
        "template_id": report.template_id, "fields": dict(report.fields or {}), "findings": report.findings,
        "impression": report.impression, "critical": report.critical, "critical_category": report.critical_category,
    }


def awaiting(report: Report) -> str | None:
    """What the report waits for: ``countersign`` while preliminary, else ``None``."""
    return "countersign" if report.state == ReportState.PRELIMINARY else None


# --- writing ---------------------------------------------------------------------------------------------------


def _bad(name: str, reason: str) -> ReportError:
    return ReportError(400, f"{name}: {reason}", parameter=name)


def merged(ctx: Context, session: Session, study: Study, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` applied, every value checked; a 400 naming the first wrong one, nothing applied."""
    unknown = [key for key in changes if key not in EDITABLE]
    if unknown:
        raise _bad(unknown[0], f"not part of a report; expected {', '.join(EDITABLE)}")
    result = {**current, "fields": dict(current["fields"])}
    if "template_id" in changes and changes["template_id"] != current["template_id"]:
        template_id = changes["template_id"]
        if not isinstance(template_id, str) or template_id not in ctx.templates:
            raise _bad("template_id", f"expected one of {', '.join(sorted(ctx.templates))}")
        template = ctx.templates[template_id]
        fields = prefilled(template, ecg_measurements(session, study))
        fields |= {key: value for key, value in current["fields"].items() if key in fields and value is not None}
        result["template_id"], result["fields"] = template_id, fields
    template = template_of(ctx, result["template_id"])
    if "fields" in changes:
        given = changes["fields"]
        if not isinstance(given, dict):
            raise _bad("fields", "expected an object of field values by field id")
        for key, value in given.items():
            field = template.field(key)
            if field is None:
                raise _bad(f"fields.{key}", f"template {template.id!r} has no such field")
            try:
                result["fields"][key] = field.check(value)
            except ValueError as exc:
                raise _bad(f"fields.{key}", str(exc)) from None
    for name in ("findings", "impression"):
        if name in changes:
            value = changes[name]
            if not isinstance(value, str):
                raise _bad(name, "expected text")
            if len(value) > TEXT_LIMIT:
                raise _bad(name, f"at most {TEXT_LIMIT} characters")
            result[name] = value
    if "critical" in changes:
        if not isinstance(changes["critical"], bool):
            raise _bad("critical", "expected true or false")
        result["critical"] = changes["critical"]
    if "critical_category" in changes:
        category = changes["critical_category"]
        codes = [c.code for c in ctx.config.reports.critical_categories]
        if category is None or category == "":
            result["critical_category"] = ""
        elif not isinstance(category, str) or category not in codes:
            raise _bad("critical_category", f"expected one of {', '.join(codes)}")
        else:
            result["critical_category"] = category
    if result["critical"] and not result["critical_category"]:
        raise _bad("critical_category", "say which kind of critical finding this is")
    if not result["critical"]:
        result["critical_category"] = ""
    return result


def _writer(session: Session, study: Study, user: User, at: datetime) -> ReadingTask:
    task = access.writing_task(session, user, study.id, at)
    if task is None:
        raise ReportError(403, "only the reader holding this study's reading task, or the consultant holding a "
                               "consult on it, writes its report (claim the task first)")
    return task


def _refuse_change(report: Report) -> None:
    if report.state in SIGNED_FOR_GOOD:
        raise ReportError(409, "a final report is never changed; add an addendum", state=report.state)
    if report.state == ReportState.PRELIMINARY:
        raise ReportError(409, "a signed report is never changed; it waits for a countersignature",
                          state=report.state)


def save_draft(
    ctx: Context, session: Session, study: Study, user: User, changes: dict[str, Any], revision: int, at: datetime,
) -> Report:
    """Save the draft (creating it from the proposal at revision 0); a stale ``revision`` is a 409."""
    session.scalar(select(Study.id).where(Study.id == study.id).with_for_update())  # one creator at a time
    report = report_of(session, study, lock=True)
    if report is not None and report.state in SIGNED_FOR_GOOD:
        _refuse_change(report)
    task = _writer(session, study, user, at)
    if report is None:
        if revision != 0:
            raise ReportError(409, "there is no saved draft yet: save it from revision 0", revision=0)
        reading = task if task.kind == "read" else read_task(session, study)
        values = merged(ctx, session, study, proposal(ctx, session, study, reading), changes)
        report = Report(
            study_pk=study.id, task_id=reading.id if reading else None, state=ReportState.DRAFT,
            author_id=user.id if task.kind == "read" else None, revision=1, created_at=at, updated_at=at, **values,
        )
        session.add(report)
        session.flush()
        audit.record(session, user.name, "report.created", "study", study.study_uid, report_id=report.id,
                     template_id=report.template_id, revision=1)
        return report
    _refuse_change(report)
    if revision != report.revision:
        raise ReportError(409, f"the draft was saved meanwhile (revision {report.revision}); reload it and "
                               "apply your changes again", revision=report.revision)
    before = content(report)
    values = merged(ctx, session, study, before, changes)
    changed = sorted(key for key in EDITABLE if values[key] != before[key])
    for key, value in values.items():
        setattr(report, key, value)
    if task.kind == "read" and report.author_id is None:
        report.author_id = user.id
    report.revision += 1
    report.updated_at = at
    audit.record(session, user.name, "report.edited", "study", study.study_uid, report_id=report.id,
                 revision=report.revision, changed=changed)
    return report


# --- signing ---------------------------------------------------------------------------------------------------


def countersign_required(session: Session, config: Config, author: User, task: ReadingTask) -> bool:
    """Whether ``author``'s report for ``task`` needs a countersignature: a junior reader at a listed centre."""
    centre = session.get(Site, task.centre_site_id)
    return centre.code in config.reports.countersign_sites and not author.expert


def _ready(ctx: Context, report: Report) -> None:
    """Refuse to sign a report without an impression or with a required field empty."""
    if not report.impression.strip():
        raise ReportError(409, "write the impression before signing", field="impression")
    template = template_of(ctx, report.template_id)
    for field in template.fields:
        if field.required and (report.fields or {}).get(field.id) in (None, ""):
            raise ReportError(409, f"fill in {field.label} ({field.label_en}) before signing", field=field.id)


def _sign(ctx: Context, session: Session, report: Report, user: User, password: str, role: str, at: datetime,
          addendum: ReportAddendum | None = None) -> ReportSignature:
    signature = signing.sign(
        session, ctx.config, ctx.storage, report, user, password, role=role, addendum=addendum, at=at,
    )
    session.flush()
    return signature


def _published(session: Session, report: Report, signature: ReportSignature, study: Study) -> None:
    events.publish(session, "report.signed", key=f"report:{report.id}:{signature.id}", report_id=report.id,
                   signature_id=signature.id, study_uid=study.study_uid)


def _finished(session: Session, task: ReadingTask | None, author: User, at: datetime) -> None:
    """The task is done: it leaves the worklist and its service-level clock stops (credited to the author)."""
    if task is not None and task.state in (TaskState.OPEN, TaskState.CLAIMED):
        mark_signed(session, task, author, at)


def sign(ctx: Context, session: Session, study: Study, user: User, password: str, at: datetime) -> ReportSignature:
    """The author signs the draft: ``final``, or ``preliminary`` where a countersignature is needed."""
    report = report_of(session, study, lock=True)
    if report is not None and report.state != ReportState.DRAFT:
        raise ReportError(409, f"the report is signed already ({report.state})", state=report.state)
    task = access.writing_task(session, user, study.id, at)
    if task is None or task.kind != "read":
        raise ReportError(403, "only the reader holding this study's reading task signs its report")
    if report is None:
        raise ReportError(409, "there is no draft to sign yet: save it first")
    _ready(ctx, report)
    preliminary = countersign_required(session, ctx.config, user, task)
    report.author_id = user.id
    report.state = ReportState.PRELIMINARY if preliminary else ReportState.FINAL
    report.finalized_at = None if preliminary else at
    report.updated_at = at
    signature = _sign(ctx, session, report, user, password, "author", at)
    record(session, task, "report_signed", user.name, state=report.state, signature_id=signature.id,
           revision=report.revision)
    audit.record(session, user.name, "report.signed", "study", study.study_uid, report_id=report.id,
                 signature_id=signature.id, state=report.state, revision=report.revision)
    if preliminary:
        seniors = access.countersigners(session, task, user.id)
        message = f"请审核签发 Countersign: {task.modality} study {study.study_uid}, preliminary report by {user.name}"
        ctx.notifier.notify(session, seniors, task, "countersign_requested", message, at)
    else:
        _finished(session, task, user, at)
        _published(session, report, signature, study)
    if report.critical:
        critical.notify_station(session, ctx.config, ctx.notifier, report, study, task, user.name, at)
    ctx.notifier.flush(session)
    return signature


def countersign(ctx: Context, session: Session, study: Study, user: User, password: str, at: datetime) -> ReportSignature:
    """A senior countersigns a preliminary report: it becomes ``final``."""
    report = report_of(session, study, lock=True)
    if report is None or report.state != ReportState.PRELIMINARY:
        state = report.state if report else "none"
        raise ReportError(409, f"only a preliminary report is countersigned (this one is {state})", state=state)
    task = session.get(ReadingTask, report.task_id) if report.task_id else read_task(session, study)
    if not access.may_countersign(session, user, task, report.author_id):
        raise ReportError(403, f"only an expert reader of {task.modality} at the reading centre (or above it), "
                               "other than the author, countersigns")
    report.state, report.finalized_at, report.updated_at = ReportState.FINAL, at, at
    signature = _sign(ctx, session, report, user, password, "countersign", at)
    record(session, task, "report_countersigned", user.name, signature_id=signature.id)
    audit.record(session, user.name, "report.countersigned", "study", study.study_uid, report_id=report.id,
                 signature_id=signature.id)
    _finished(session, task, session.get(User, report.author_id), at)
    _published(session, report, signature, study)
    ctx.notifier.flush(session)
    return signature


def _held_consult(session: Session, study: Study, user: User, at: datetime) -> ReadingTask | None:
    task = access.writing_task(session, user, study.id, at)
    return task if task is not None and task.kind == "consult" else None


def cosign(
    ctx: Context, session: Session, study: Study, user: User, password: str, answer: str, at: datetime,
) -> ReportSignature:
    """The consultant co-signs the signed report (role ``cosign``), which answers the consult."""
    consult = _held_consult(session, study, user, at)
    if consult is None:
        raise ReportError(403, "only the consultant holding a consult on this study co-signs its report")
    report = report_of(session, study, lock=True)
    if report is None or report.state == ReportState.DRAFT:
        raise ReportError(409, "the reader signs the report first; until then you may edit the draft",
                          state=report.state if report else "none")
    signature = _sign(ctx, session, report, user, password, "cosign", at)
    answer_consult(session, consult, user, answer, "co-sign", at)
    task = session.get(ReadingTask, report.task_id) if report.task_id else read_task(session, study)
    record(session, task, "report_cosigned", user.name, signature_id=signature.id, consult_task_id=consult.id)
    audit.record(session, user.name, "report.cosigned", "study", study.study_uid, report_id=report.id,
                 signature_id=signature.id, consult_task_id=consult.id)
    if report.state in SIGNED_FOR_GOOD:
        _published(session, report, signature, study)
    return signature


def add_addendum(
    ctx: Context, session: Session, study: Study, user: User, text: str, password: str, at: datetime,
) -> tuple[ReportAddendum, ReportSignature]:
    """A signed addendum to a final report: the report becomes ``amended``, the original unchanged."""
    if not text.strip():
        raise _bad("text", "write the addendum")
    if len(text) > TEXT_LIMIT:
        raise _bad("text", f"at most {TEXT_LIMIT} characters")
    report = report_of(session, study, lock=True)
    if report is None or report.state not in SIGNED_FOR_GOOD:
        state = report.state if report else "none"
        raise ReportError(409, f"only a final report takes addenda (this one is {state})", state=state)
    task = session.get(ReadingTask, report.task_id) if report.task_id else read_task(session, study)
    consult = _held_consult(session, study, user, at)
    if user.id != report.author_id and consult is None and not access.may_countersign(session, user, task, None):
        raise ReportError(403, "only the report's author, an expert reader of the modality, or the consultant "
                               "holding a consult on the study adds an addendum")
    addendum = ReportAddendum(report_id=report.id, text=text, author_id=user.id, created_at=at, signed_at=at)
    session.add(addendum)
    session.flush()
    report.state, report.updated_at = ReportState.AMENDED, at
    signature = _sign(ctx, session, report, user, password, "author", at, addendum=addendum)
    if consult is not None:
        answer_consult(session, consult, user, text, "addendum", at)
    record(session, task, "addendum_signed", user.name, addendum_id=addendum.id, signature_id=signature.id)
    audit.record(session, user.name, "report.addendum_signed", "study", study.study_uid, report_id=report.id,
                 addendum_id=addendum.id, signature_id=signature.id)
    _published(session, report, signature, study)
    return addendum, signature


def acknowledge_critical(session: Session, study: Study, user: User, at: datetime) -> tuple[Report, Any]:
    """The station acknowledges the report's critical finding (again: nothing changes)."""
    if not access.may_acknowledge_critical(session, user, study):
        raise ReportError(403, "only the station that sent the study acknowledges its critical finding")
    report = report_of(session, study)
    notice = critical.open_notice(session, report, lock=True) if report is not None else None
    if notice is None:
        raise ReportError(409, "no critical finding of this study waits for acknowledgement")
    task = session.get(ReadingTask, report.task_id) if report.task_id else read_task(session, study)
    critical.acknowledge(session, notice, task, study, user, at)
    return report, notice
