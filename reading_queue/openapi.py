"""The OpenAPI 3.1 document of the JSON API under ``/api/v1`` (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from reading_queue.consult import ANSWER_MODES
from reading_queue.tasks import MODALITIES, PRIORITIES, STUDY_STATUS, TaskState

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: Sequence[str] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **extra}


def _problem_name(status: int) -> str:
    """The component name of a problem response, e.g. ``NotFound``."""
    return HTTPStatus(status).phrase.title().replace(" ", "")


def _operation(
    operation_id: str, summary: str, ok: tuple[int, str], errors: Sequence[int], **extra: Any
) -> dict[str, Any]:
    """An authenticated operation answering ``ok`` (status, schema name) as JSON, and problem details for ``errors``."""
    status, schema = ok
    responses = {str(status): {"description": HTTPStatus(status).phrase,
                               "content": {"application/json": {"schema": _ref(schema)}}}}
    responses |= {str(code): {"$ref": f"#/components/responses/{_problem_name(code)}"} for code in (401, *errors)}
    return {"operationId": operation_id, "summary": summary, "responses": responses, **extra}


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_STRING, _TIME, _INT = {"type": "string"}, {"type": "string", "format": "date-time"}, {"type": "integer"}
_SITE = _object(("code", "name", "name_en"), code=_STRING, name=_STRING, name_en=_STRING)
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": _INT}
_STUDY_UID = {"name": "study_uid", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
_REVIEW_ID = {"name": "review_id", "in": "path", "required": True, "schema": _INT}
_FILTERS = [
    _query("site", "Code of the sending site.", _STRING),
    _query("modality", "Modality read.", {"type": "string", "enum": list(MODALITIES)}),
    _query("priority", "Priority.", {"type": "string", "enum": list(PRIORITIES)}),
]
_PROBLEM_CODES = (400, 401, 403, 404, 409)

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Telerad API",
        "version": "1",
        "description": "Worklist, claims, consults, urgency, study status and turnaround; reports: the draft, "
                       "signatures, addenda, critical findings, FHIR. Errors are RFC 9457 problem details. Times are "
                       "ISO 8601 in UTC.",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearerAuth": []}],
    "paths": {
        "/worklist": {"get": _operation(
            "worklist", "The caller's tasks by deadline, with their unread notifications", (200, "Worklist"), (400,),
            parameters=[
                _query("state", "Comma-separated task states (default open,claimed).",
                       {"type": "array", "items": {"type": "string", "enum": [s.value for s in TaskState]}},
                       style="form", explode=False),
                *_FILTERS,
                _query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
                _query("offset", "Tasks to skip.", {"type": "integer", "minimum": 0, "default": 0}),
            ],
        )},
        "/tasks/{task_id}/claim": {"post": _operation(
            "claimTask", "Claim a task, or renew the lease of a task the caller holds", (200, "Task"), (403, 404, 409),
            parameters=[_TASK_ID],
        )},
        "/tasks/{task_id}/release": {"post": _operation(
            "releaseTask", "Give a held task back to the worklist", (200, "Task"), (404, 409), parameters=[_TASK_ID],
        )},
        "/tasks/{task_id}/consult": {"post": _operation(
            "askConsult", "Ask the province for a consult on a held reading task", (201, "Task"), (400, 404, 409),
            parameters=[_TASK_ID], requestBody=_json_body("ConsultRequest"),
        )},
        "/tasks/{task_id}/answer": {"post": _operation(
            "answerConsult", "Answer a held consult", (200, "Task"), (400, 404, 409),
            parameters=[_TASK_ID], requestBody=_json_body("ConsultAnswer"),
        )},
        "/studies/{study_uid}": {"get": _operation(
            "studyStatus", "A study's status, tasks and timeline", (200, "StudyStatus"), (404,), parameters=[_STUDY_UID],
        )},
        "/studies/{study_uid}/urgency": {"post": _operation(
            "markUrgency", "A station marks the urgency of its study", (200, "UrgencyMark"), (400, 403, 404),
            parameters=[_STUDY_UID], requestBody=_json_body("UrgencyRequest"),
        )},
        "/duty": {"post": _operation(
            "setDuty", "A supervisor puts a reader on or off duty for a period", (201, "DutyShift"), (400, 403),
            requestBody=_json_body("DutyRequest"),
        )},
        "/tasks/{task_id}/reassign": {"post": _operation(
            "reassignTask", "A supervisor gives a running task to another qualified reader, with a reason",
            (200, "Task"), (400, 403, 404, 409), parameters=[_TASK_ID], requestBody=_json_body("ReassignRequest"),
        )},
        "/tasks/{task_id}/priority": {"post": _operation(
            "changePriority", "A supervisor changes a running task's priority and so its deadline, with a reason",
            (200, "Task"), (400, 403, 404, 409), parameters=[_TASK_ID], requestBody=_json_body("PriorityRequest"),
        )},
        "/backlog": {"get": _operation(
            "liveBoard", "Supervisors' live board: open work by time left, modality and priority; the overdue list "
            "with who holds each task since when; readers with their duty and open work; stations silent today",
            (200, "LiveBoard"), (403,),
        )},
        "/turnaround": {"get": _operation(
            "turnaround", "Turnaround over a period, per interval (completion to assignment, first opening, "
            "signature, delivery) overall and per site, modality, priority and reader; the daily trend, the "
            "breaches and the backlog, over the tasks the caller may see", (200, "Turnaround"), (400, 403),
            parameters=[
                *_FILTERS,
                _query("centre", "Code of the reading centre (county) whose tasks to count.", _STRING),
                _query("reader", "User name of the reader who has the task, the signer once signed (readers: only "
                       "their own).", _STRING),
                _query("since", "Milestone reached at or after (ISO 8601 date or date-time; without an offset, in "
                       "the service's time zone).", _STRING),
                _query("until", "Milestone reached before (as since).", _STRING),
                _query("breaches", "How many of the period's breaches to list, latest first.",
                       {"type": "integer", "minimum": 0, "maximum": 10000, "default": 100}),
            ],
        )},
        "/report-templates": {"get": _operation(
            "reportTemplates", "The installed report templates and critical-finding categories, for the editor",
            (200, "ReportTemplates"), (),
        )},
        "/studies/{study_uid}/report": {
            "get": {
                **_operation(
                    "getReport", "The study's report (or, before the first save, the proposed draft); with Accept: "
                    "application/fhir+json the signed report as a FHIR R4 DiagnosticReport", (200, "Report"), (404, 409),
                    parameters=[_STUDY_UID],
                ),
                "responses": {
                    "200": {"description": "OK", "content": {
                        "application/json": {"schema": _ref("Report")},
                        "application/fhir+json": {"schema": _ref("DiagnosticReport")},
                    }},
                    **{str(code): {"$ref": f"#/components/responses/{_problem_name(code)}"} for code in (401, 404, 409)},
                },
            },
            "put": _operation(
                "saveReport", "Save the draft from the revision it was loaded at (a stale revision is a 409 carrying "
                "the current one); a signed report is never changed", (200, "Report"), (400, 403, 404, 409),
                parameters=[_STUDY_UID], requestBody=_json_body("ReportDraft"),
            ),
        },
        "/studies/{study_uid}/report/sign": {"post": _operation(
            "signReport", "The author signs with their password: final, or preliminary where a countersignature is "
            "needed", (200, "Report"), (400, 403, 404, 409), parameters=[_STUDY_UID], requestBody=_json_body("Password"),
        )},
        "/studies/{study_uid}/report/countersign": {"post": _operation(
            "countersignReport", "An expert countersigns a preliminary report: it becomes final", (200, "Report"),
            (400, 403, 404, 409), parameters=[_STUDY_UID], requestBody=_json_body("Password"),
        )},
        "/studies/{study_uid}/report/cosign": {"post": _operation(
            "cosignReport", "The consultant holding a consult co-signs the signed report and so answers the consult",
            (200, "Report"), (400, 403, 404, 409), parameters=[_STUDY_UID], requestBody=_json_body("Cosignature"),
        )},
        "/studies/{study_uid}/report/addenda": {"post": _operation(
            "addAddendum", "A signed addendum to a final report: it becomes amended, the original unchanged",
            (201, "Report"), (400, 403, 404, 409), parameters=[_STUDY_UID], requestBody=_json_body("Addendum"),
        )},
        "/studies/{study_uid}/report/critical/ack": {"post": _operation(
            "acknowledgeCritical", "The sending station acknowledges the report's critical finding",
            (200, "CriticalAcknowledgement"), (403, 404, 409), parameters=[_STUDY_UID],
        )},
        "/studies/{study_uid}/report/pdf": {"get": {
            **_operation("reportPdf", "The latest signed PDF of the report, byte for byte as signed", (200, "Report"),
                         (404,), parameters=[_STUDY_UID]),
            "responses": {
                "200": {"description": "OK", "content": {"application/pdf": {"schema": {
                    "type": "string", "contentMediaType": "application/pdf"}}}},
                **{str(code): {"$ref": f"#/components/responses/{_problem_name(code)}"} for code in (401, 404)},
            },
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": [],
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/peer-reviews": {"get": _operation(
            "peerReviews", "The peer reviews the caller sees (a reviewer's own, an author's once scored, a "
            "supervisor's centre's), oldest first", (200, "PeerReviewList"), (400,),
            parameters=[
                _query("state", "Comma-separated review states (default pending).",
                       {"type": "array", "items": {"type": "string", "enum": ["pending", "done", "cancelled"]}},
                       style="form", explode=False),
                _query("reader", "User name of the reviewed report's author.", _STRING),
                _query("reviewer", "User name of the reviewer.", _STRING),
            ],
        )},
        "/peer-reviews/{review_id}": {
            "get": _operation("peerReview", "One peer review with the signed report it is about", (200, "PeerReview"),
                              (404,), parameters=[_REVIEW_ID]),
            "post": _operation(
                "scorePeerReview", "The assigned reviewer scores the report once (RADPEER-like: agree 1, minor 2, "
                "significant 3); a significant discrepancy is told to the supervisors and the author",
                (200, "PeerReview"), (400, 403, 404, 409), parameters=[_REVIEW_ID],
                requestBody=_json_body("PeerReviewScore"),
            ),
        },
        "/peer-reviews/{review_id}/addendum": {"post": _operation(
            "startPeerReviewAddendum", "The author (or an expert who may amend) starts an addendum from a significant "
            "discrepancy: a draft citing the review (201; 200 with the same draft when started already), signed with "
            "POST /studies/{study_uid}/report/addenda", (201, "PeerReview"), (403, 404, 409), parameters=[_REVIEW_ID],
        )},
        "/peer-reviews/{review_id}/reassign": {"post": _operation(
            "reassignPeerReview", "A supervisor gives a pending review to another qualified reader (without user: the "
            "next candidate), with a reason", (200, "PeerReview"), (400, 403, 404, 409), parameters=[_REVIEW_ID],
            requestBody=_json_body("PeerReviewReassign"),
        )},
        "/peer-reviews/{review_id}/cancel": {"post": _operation(
            "cancelPeerReview", "A supervisor withdraws a pending review, with a reason", (200, "PeerReview"),
            (400, 403, 404, 409), parameters=[_REVIEW_ID], requestBody=_json_body("Reason"),
        )},
        "/scorecards": {"get": _operation(
            "scorecards", "Reader scorecards over a period: volume, turnaround, peer-review agreement, reviews done, "
            "addenda (a supervisor's centre and below; a reader's own)", (200, "Scorecards"), (400, 403),
            parameters=[
                _query("since", "From (ISO 8601 date or date-time; without an offset, in the service's time zone); "
                       "default 30 days before until.", _STRING),
                _query("until", "Before (as since); default now.", _STRING),
                _query("centre", "Code of a centre below the caller's (its readers only).", _STRING),
                _query("reader", "User name of one reader (readers: only their own).", _STRING),
            ],
        )},
    },
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "An API token from `telerad token create NAME`."}},
        "responses": {
            _problem_name(code): {
                "description": HTTPStatus(code).phrase,
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            }
            for code in _PROBLEM_CODES
        },
        "schemas": {
            "Problem": _object(
                ("type", "title", "status"), type={"type": "string", "format": "uri-reference"}, title=_STRING,
                status=_INT, detail=_STRING,
                parameter={"type": "string", "description": "The request parameter at fault (400)."},
            ),
            "Person": _object(("name", "display_name"), name=_STRING, display_name=_STRING),
            "Task": _object(
                ("task_id", "kind", "state", "study_uid", "patient", "site", "modality", "priority", "due_at"),
                task_id=_INT,
                kind={"type": "string", "enum": ["read", "consult"]},
                parent_task_id=_nullable(_INT),
                state={"type": "string", "enum": [s.value for s in TaskState]},
                study_uid=_STRING,
                patient=_object(("name", "id"), name=_STRING, id=_STRING),
                site=_SITE,
                modality=_STRING,
                priority={"type": "string", "enum": list(PRIORITIES)},
                priority_source={"type": "string", "enum": ["station", "study", "rule", "default", "consult"]},
                opened_at=_TIME,
                due_at=_TIME,
                seconds_left=_nullable({"type": "integer", "description": "Negative when overdue."}),
                holder=_nullable(_ref("Person")),
                lease_until=_nullable(_TIME),
                assignee=_nullable(_ref("Person")),
                escalated={"type": "boolean"},
                breached={"type": "boolean"},
                reminders_sent=_INT,
                signed_at=_nullable(_TIME),
            ),
            "Notification": _object(
                ("id", "task_id", "kind", "message", "created_at"),
                id=_INT, task_id=_INT, kind=_STRING, message=_STRING, created_at=_TIME,
            ),
            "Worklist": _object(
                ("at", "items", "notifications"), at=_TIME,
                items={"type": "array", "items": _ref("Task")},
                notifications={"type": "array", "items": _ref("Notification")},
            ),
            "TimelineEvent": _object(
                ("at", "task_id", "actor", "kind", "detail"),
                at=_TIME, task_id=_INT, actor=_STRING, kind=_STRING, detail={"type": "object"},
            ),
            "Study": _object(
                ("study_uid", "patient", "site", "modalities", "num_instances", "state", "received_at"),
                study_uid=_STRING,
                patient=_object(("name", "id"), name=_STRING, id=_STRING, sex=_STRING, birth_date=_STRING),
                site=_SITE,
                modalities={"type": "array", "items": _STRING},
                description=_STRING,
                accession_number=_STRING,
                study_date=_STRING,
                num_series=_INT,
                num_instances=_INT,
                state={"type": "string", "enum": ["receiving", "complete"]},
                received_at=_TIME,
                last_received_at=_TIME,
                completed_at=_nullable(_TIME),
            ),
            "StudyStatus": _object(
                ("status", "study", "tasks", "timeline"),
                status={"type": "string", "enum": list(STUDY_STATUS.values())},
                study=_ref("Study"),
                tasks={"type": "array", "items": _ref("Task")},
                timeline={"type": "array", "items": _ref("TimelineEvent")},
            ),
            "UrgencyRequest": _object(("priority",), priority={"type": "string", "enum": list(PRIORITIES)}),
            "UrgencyMark": _object(
                ("study_uid", "priority", "marked_by", "marked_at", "task"),
                study_uid=_STRING, priority={"type": "string", "enum": list(PRIORITIES)}, marked_by=_STRING,
                marked_at=_TIME, task=_nullable(_ref("Task")),
            ),
            "ConsultRequest": _object(("question",), question={"type": "string", "minLength": 1}),
            "DutyRequest": _object(
                ("user", "starts_at", "ends_at", "on_duty"),
                user=_STRING, starts_at=_TIME, ends_at=_TIME, on_duty={"type": "boolean"},
            ),
            "DutyShift": _object(
                ("id", "user", "starts_at", "ends_at", "on_duty", "set_by"),
                id=_INT, user=_STRING, starts_at=_TIME, ends_at=_TIME, on_duty={"type": "boolean"}, set_by=_STRING,
            ),
            "ConsultAnswer": _object(
                ("answer", "mode"), answer=_STRING, mode={"type": "string", "enum": list(ANSWER_MODES)},
            ),
            "TemplateField": {"type": "object", "required": ["id", "type", "label", "label_en"], "properties": {
                "id": _STRING, "type": {"type": "string", "enum": ["text", "choice", "number"]}, "label": _STRING,
                "label_en": _STRING,
                "options": {"type": "array", "items": _object(("value", "label", "label_en"), value=_STRING,
                                                              label=_STRING, label_en=_STRING)},
                "unit": _STRING, "unit_en": _STRING, "default": {}, "prefill": _nullable(_STRING),
                "required": {"type": "boolean", "description": "Must be filled in before the report is signed."},
            }},
            "ReportTemplate": _object(
                ("id", "name", "name_en", "modalities", "fields", "findings", "impression", "phrases"),
                id=_STRING, name=_STRING, name_en=_STRING, modalities={"type": "array", "items": _STRING},
                body_parts={"type": "array", "items": _STRING}, keywords={"type": "array", "items": _STRING},
                default_for={"type": "array", "items": _STRING},
                loinc=_object(("code", "display"), code=_STRING, display=_STRING),
                sections={"type": "object"},
                fields={"type": "array", "items": _ref("TemplateField")},
                findings=_STRING, impression=_STRING,
                phrases={"type": "array", "items": _object(
                    ("label", "label_en", "section", "text"), label=_STRING, label_en=_STRING,
                    section={"type": "string", "enum": ["findings", "impression"]}, text=_STRING)},
            ),
            "ReportTemplates": _object(
                ("templates", "critical_categories"),
                templates={"type": "array", "items": _ref("ReportTemplate")},
                critical_categories={"type": "array", "items": _object(
                    ("code", "name", "name_en"), code=_STRING, name=_STRING, name_en=_STRING)},
            ),
            "ReportDraft": _object(
                ("revision",),
                revision={"type": "integer", "minimum": 0,
                          "description": "The revision the draft was loaded at (0 before the first save)."},
                template_id=_STRING,
                fields={"type": "object", "description": "Field values by field id: text, an option value, "
                                                         "a number, or null."},
                findings=_STRING, impression=_STRING, critical={"type": "boolean"}, critical_category=_STRING,
            ),
            "Password": _object(("password",), password={"type": "string", "minLength": 1}),
            "Cosignature": _object(("password",), password={"type": "string", "minLength": 1}, answer=_STRING),
            "Addendum": _object(("text", "password"), text={"type": "string", "minLength": 1},
                                password={"type": "string", "minLength": 1}),
            "CriticalNotice": _object(
                ("category", "notified_at"), category=_STRING, notified_at=_TIME,
                acknowledged_at=_nullable(_TIME), acknowledged_by=_nullable(_ref("Person")),
                escalated_at=_nullable(_TIME),
            ),
            "CriticalAcknowledgement": {"allOf": [
                _ref("CriticalNotice"), _object(("study_uid",), study_uid=_STRING),
            ]},
            "Report": _object(
                ("study_uid", "saved", "state", "revision", "template_id", "fields", "findings", "impression",
                 "critical", "critical_category", "signatures", "addenda", "may"),
                study_uid=_STRING,
                task_id=_nullable(_INT),
                saved={"type": "boolean", "description": "False for the proposed draft before the first save."},
                state={"type": "string", "enum": ["draft", "preliminary", "final", "amended"]},
                revision=_INT,
                template_id=_STRING,
                template=_nullable(_ref("ReportTemplate")),
                fields={"type": "object"},
                findings=_STRING,
                impression=_STRING,
                critical={"type": "boolean"},
                critical_category=_STRING,
                author=_nullable(_ref("Person")),
                created_at=_nullable(_TIME),
                updated_at=_nullable(_TIME),
                finalized_at=_nullable(_TIME),
                awaiting=_nullable({"type": "string", "enum": ["countersign"]}),
                signatures={"type": "array", "items": _object(
                    ("id", "role", "signer", "signed_at"), id=_INT,
                    role={"type": "string", "enum": ["author", "countersign", "cosign"]}, signer=_ref("Person"),
                    signed_at=_TIME, addendum_id=_nullable(_INT), algorithm=_STRING, has_pdf={"type": "boolean"})},
                addenda={"type": "array", "items": _object(
                    ("id", "text", "author", "signed_at"), id=_INT, text=_STRING, author=_ref("Person"),
                    created_at=_TIME, signed_at=_nullable(_TIME))},
                critical_notice=_nullable(_ref("CriticalNotice")),
                measurements=_nullable({"type": "object", "description": "The 12-lead ECG measurements the "
                                        "template was prefilled from (source telerad or device)."}),
                may={"type": "object", "additionalProperties": {"type": "boolean"}},
            ),
            "DiagnosticReport": {
                "type": "object",
                "description": "A FHIR R4 DiagnosticReport (https://hl7.org/fhir/R4/diagnosticreport.html).",
                "required": ["resourceType", "status", "code"],
                "properties": {"resourceType": {"const": "DiagnosticReport"},
                               "status": {"type": "string", "enum": ["preliminary", "final", "amended"]}},
            },
            "ReassignRequest": _object(("user", "reason"), user=_STRING, reason={"type": "string", "minLength": 1}),
            "PriorityRequest": _object(
                ("priority", "reason"), priority={"type": "string", "enum": list(PRIORITIES)},
                reason={"type": "string", "minLength": 1},
            ),
            "LiveBoard": _object(
                ("at", "backlog", "overdue", "readers", "silent_stations"),
                at=_TIME, backlog={"type": "object"}, overdue={"type": "array", "items": {"type": "object"}},
                readers={"type": "array", "items": {"type": "object"}},
                silent_stations={"type": "array", "items": {"type": "object"}},
            ),
            "IntervalFigures": _object(
                ("count", "median_minutes", "p90_minutes", "max_minutes"), count=_INT,
                median_minutes=_nullable({"type": "number"}), p90_minutes=_nullable({"type": "number"}),
                max_minutes=_nullable({"type": "number"}), within_deadline_share=_nullable({"type": "number"}),
            ),
            "Turnaround": _object(
                ("filters", "intervals", "groups", "daily", "breaches", "signed", "delivered", "backlog"),
                filters={"type": "object"},
                timezone=_STRING,
                intervals=_object(
                    ("assigned", "opened", "signed", "delivered"), assigned=_ref("IntervalFigures"),
                    opened=_ref("IntervalFigures"), signed=_ref("IntervalFigures"), delivered=_ref("IntervalFigures"),
                ),
                groups=_object(
                    ("site", "modality", "priority", "reader"),
                    **{dimension: {"type": "array", "items": {"type": "object"}}
                       for dimension in ("site", "modality", "priority", "reader")},
                ),
                daily={"type": "array", "items": {"type": "object"}},
                breaches=_object(("count", "items"), count=_INT, items={"type": "array", "items": {"type": "object"}}),
                signed=_object(
                    ("count",), count=_INT, median_minutes=_nullable({"type": "number"}),
                    p90_minutes=_nullable({"type": "number"}), within_deadline_share=_nullable({"type": "number"}),
                ),
                delivered=_object(
                    ("count",), count=_INT, median_minutes=_nullable({"type": "number"}),
                    p90_minutes=_nullable({"type": "number"}),
                ),
                backlog=_object(
                    ("overdue", "under_1h", "under_4h", "under_24h", "later"),
                    overdue=_INT, under_1h=_INT, under_4h=_INT, under_24h=_INT, later=_INT,
                ),
            ),
            "PeerReviewSummary": _object(
                ("id", "state", "study_uid", "task_id", "modality", "author", "reviewer", "created_at", "due_at"),
                id=_INT, state={"type": "string", "enum": ["pending", "done", "cancelled"]},
                score=_nullable({"type": "string", "enum": ["agree", "minor", "significant"]}),
                radpeer=_nullable({"type": "integer", "minimum": 1, "maximum": 3}), new_reader={"type": "boolean"},
                study_uid=_STRING, task_id=_INT, modality=_STRING, site=_SITE,
                patient=_object(("name", "id"), name=_STRING, id=_STRING), description=_STRING,
                author=_ref("Person"), reviewer=_nullable(_ref("Person")), created_at=_TIME,
                assigned_at=_nullable(_TIME), due_at=_TIME, late={"type": "boolean"}, done_at=_nullable(_TIME),
            ),
            "PeerReviewList": _object(
                ("at", "items"), at=_TIME, items={"type": "array", "items": _ref("PeerReviewSummary")},
            ),
            "PeerReview": {"allOf": [_ref("PeerReviewSummary"), _object(
                ("comment", "report", "may"), comment=_STRING,
                report={"type": "object", "description": "The signed report: state, template_id, fields, findings, "
                                                         "impression, critical, finalized_at, addenda."},
                addendum=_nullable(_object(
                    ("draft", "started_at"), draft=_STRING, started_at=_TIME, started_by=_ref("Person"),
                    signed=_nullable({"type": "object", "description": "The addendum signed since the review."}),
                )),
                may={"type": "object", "additionalProperties": {"type": "boolean"}},
            )]},
            "PeerReviewScore": _object(
                ("score",), score={"type": "string", "enum": ["agree", "minor", "significant"]},
                comment={"type": "string", "description": "Required for a minor or significant discrepancy."},
            ),
            "PeerReviewReassign": _object(
                ("reason",), user=_nullable(_STRING), reason={"type": "string", "minLength": 1},
            ),
            "Reason": _object(("reason",), reason={"type": "string", "minLength": 1}),
            "Scorecard": _object(
                ("name", "display_name", "volume", "reviews_received", "reviews_done", "addenda"),
                name=_STRING, display_name=_STRING, volume=_INT, median_minutes=_nullable({"type": "number"}),
                p90_minutes=_nullable({"type": "number"}), within_deadline_share=_nullable({"type": "number"}),
                reviews_received=_INT, agree=_INT, minor=_INT, significant=_INT,
                agreement_share=_nullable({"type": "number"}), reviews_done=_INT, addenda=_INT,
            ),
            "Scorecards": _object(
                ("since", "until", "items"), since=_TIME, until=_TIME,
                items={"type": "array", "items": _ref("Scorecard")},
            ),
        },
    },
}
