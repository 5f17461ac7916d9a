"""A signed report as a FHIR R4 DiagnosticReport (JSON), for the API and the webhook.

The resource (https://hl7.org/fhir/R4/diagnosticreport.html) carries:

- ``status``: the report's state — ``preliminary``, ``final`` or ``amended``
  (a draft is ``registered``: the API never shows one);
- ``category``: HL7 v2 table 0074, ``RAD`` (radiology) or ``EC`` (electrocardiac);
- ``code``: the LOINC code of the examination, from its template;
- ``subject``: a logical Patient reference by identifier (the issuer of the
  patient ID, or the sending site, and the ID), ``basedOn`` the accession number;
- ``effectiveDateTime``: when the study was made (Study Date and Time, in the
  service's time zone), ``issued``: the latest signature's time;
- ``performer``: the reading centre and the author; ``resultsInterpreter``:
  everyone who signed (author, countersigner, consultant);
- ``conclusion``: the impression, followed by any addenda;
- ``presentedForm``: the latest signed PDF (``application/pdf``), inline as
  base64 when the storage area is given, and by URL when a base URL is;
- ``imagingStudy``: a logical reference by Study Instance UID (``urn:dicom:uid``).

References are logical (by identifier): Telerad serves no Patient or
Practitioner resources of its own.
"""

from __future__ import annotations

import base64
import hashlib
import html
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from pacs_node.storage import FileStorage
from reading_queue.tasks import ReadingTask, primary_modality
from reports.models import Report, ReportAddendum, ReportSignature
from reports.templates import Template, load_templates
from telerad.sites import Site
from telerad.users import User

MEDIA_TYPE = "application/fhir+json"
FALLBACK_CODES = {"ECG": ("11524-6", "EKG study")}
IMAGING_CODE = ("18748-4", "Diagnostic imaging study")
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_STATUS = {"draft": "registered", "preliminary": "preliminary", "final": "final", "amended": "amended"}


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _effective(study: Study, timezone: str) -> str:
    """Study Date and Time as a FHIR dateTime (a date alone when there is no time)."""
    date = study.study_date
    if len(date) == 8 and date.isdigit():
        time = "".join(ch for ch in study.study_time.split(".")[0] if ch.isdigit())
        if len(time) >= 4:
            time = time.ljust(6, "0")[:6]
            try:
                moment = datetime(int(date[:4]), int(date[4:6]), int(date[6:]), int(time[:2]), int(time[2:4]),
                                  int(time[4:6]), tzinfo=ZoneInfo(timezone))
                return _instant(moment)
            except ValueError:
                pass
        return f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return _instant(study.first_received_at)


def _practitioner(user: User) -> dict[str, Any]:
    return {"type": "Practitioner", "identifier": {"system": "urn:telerad:user", "value": user.name},
            "display": user.display_name or user.name}


def _code(template: Template | None, modality: str) -> dict[str, Any]:
    if template is not None:
        return {"coding": [{"system": "http://loinc.org", "code": template.loinc.code, "display": template.loinc.display}],
                "text": f"{template.name} {template.name_en}"}
    code, display = FALLBACK_CODES.get(modality, IMAGING_CODE)
    return {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display}


def diagnostic_report(
    session: Session, report: Report, *, storage: FileStorage | None = None, base_url: str | None = None,
    templates: dict[str, Template] | None = None, timezone: str = "Asia/Shanghai",
) -> dict[str, Any]:
    """``report`` as a FHIR R4 DiagnosticReport resource (a JSON-ready dict)."""
    study = session.get(Study, report.study_pk)
    patient = study.patient
    task = session.get(ReadingTask, report.task_id) if report.task_id else None
    modality = task.modality if task is not None else primary_modality(study.modalities)
    template = (templates if templates is not None else load_templates(None)).get(report.template_id)
    signed = list(session.scalars(
        select(ReportSignature).where(ReportSignature.report_id == report.id).order_by(ReportSignature.id)
    ))
    signers: list[User] = []
    for signature in signed:
        signer = session.get(User, signature.signer_id)
        if signer not in signers:
            signers.append(signer)
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"telerad-report-{report.id}",
        "identifier": [{"system": "urn:telerad:report", "value": str(report.id)}],
        "status": _STATUS[report.state],
        "category": [{"coding": [
            {"system": _V2_0074, "code": "EC", "display": "Electrocardiac"} if modality == "ECG"
            else {"system": _V2_0074, "code": "RAD", "display": "Radiology"}
        ]}],
        "code": _code(template, modality),
        "subject": {
            "type": "Patient",
            "identifier": {"system": f"urn:telerad:patient-id:{quote(patient.issuer, safe=':-._')}",
                           "value": patient.patient_id},
            "display": patient.name or patient.patient_id,
        },
        "effectiveDateTime": _effective(study, timezone),
    }
    if study.accession_number:
        resource["basedOn"] = [{"type": "ServiceRequest", "identifier": {
            "type": {"coding": [{"system": _V2_0203, "code": "ACSN"}]}, "value": study.accession_number}}]
    if signed:
        resource["issued"] = _instant(signed[-1].signed_at)
    performers: list[dict[str, Any]] = []
    if task is not None:
        centre = session.get(Site, task.centre_site_id)
        performers.append({"type": "Organization", "identifier": {"system": "urn:telerad:site", "value": centre.code},
                           "display": centre.name})
    if report.author_id is not None:
        performers.append(_practitioner(session.get(User, report.author_id)))
    if performers:
        resource["performer"] = performers
    if signers:
        resource["resultsInterpreter"] = [_practitioner(user) for user in signers]
    resource["imagingStudy"] = [{"type": "ImagingStudy", "identifier": {
        "system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}, "display": study.description or modality}]
    resource["conclusion"] = _conclusion(session, report)
    form = _presented_form(study, signed, storage, base_url)
    if form is not None:
        resource["presentedForm"] = [form]
    resource["text"] = {"status": "generated", "div": _narrative(resource, report)}
    return resource


def _conclusion(session: Session, report: Report) -> str:
    parts = [report.impression.strip()]
    for addendum in session.scalars(
        select(ReportAddendum).where(ReportAddendum.report_id == report.id, ReportAddendum.signed_at.is_not(None))
        .order_by(ReportAddendum.id)
    ):
        author = session.get(User, addendum.author_id)
        parts.append(f"补充说明 Addendum ({_instant(addendum.signed_at)}, {author.display_name or author.name}): "
                     f"{addendum.text.strip()}")
    return "\n\n".join(part for part in parts if part)


def _presented_form(
    study: Study, signed: list[ReportSignature], storage: FileStorage | None, base_url: str | None,
) -> dict[str, Any] | None:
    latest = next((s for s in reversed(signed) if s.pdf_key), None)
    if latest is None:
        return None
    form: dict[str, Any] = {"contentType": "application/pdf", "language": "zh-CN",
                            "title": f"report-{study.study_uid}.pdf", "creation": _instant(latest.signed_at)}
    if base_url is not None:
        form["url"] = f"{base_url.rstrip('/')}/api/v1/studies/{study.study_uid}/report/pdf"
    if storage is not None:
        data = storage.read(latest.pdf_key)
        form["data"] = base64.b64encode(data).decode("ascii")
        form["size"] = len(data)
        form["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")  # noqa: S324 - FHIR's Attachment.hash
    return form


def _narrative(resource: dict[str, Any], report: Report) -> str:
    lines = [
        f"<p><b>{html.escape(resource['code']['text'])}</b> ({html.escape(resource['status'])})</p>",
        f"<p>{html.escape(resource['subject']['display'])}</p>",
    ]
    if report.findings.strip():
        lines.append(f"<p>{html.escape(report.findings.strip())}</p>")
    lines.append(f"<p>{html.escape(resource['conclusion'])}</p>")
    return f'<div xmlns="http://www.w3.org/1999/xhtml">{"".join(lines)}</div>'
