"""STOW-RS (PS3.18 10.5): a station stores instances over HTTP exactly as over C-STORE.

``POST /studies`` and ``POST /studies/{s}`` take ``multipart/related; type="application/dicom"``, one
PS3.10 file per part. Each part goes through :meth:`pacs_node.archive.Archive.receive`, the one way in:
the same checks, the same events, on disk and indexed before it counts as stored. The sender is the
caller's site; the calling AE title recorded with the instances is ``WEB:`` and the user's name, cut to
the 16 characters of an AE title (PS3.5 6.2; the audit trail keeps the whole name).

Only station accounts store: stations send studies (DESIGN.md); readers, consultants, supervisors and
administrators do not, and are answered 403.

The message is spooled and its framing checked before any part is stored, so a malformed body is a 400
that leaves nothing behind. The answer (10.5.3) is 200 when every instance was stored, 202 when some were
not and 409 when none was, with a Store Instances Response (DICOM JSON): Retrieve URL of the study,
Referenced SOP Sequence (each with its Retrieve URL) and Failed SOP Sequence, whose Failure Reason is the
C-STORE failure status (0xC000 cannot understand, 0xA700 out of resources ...; 0xA900 for an instance of
another study than the URL's) with an Error Comment (0000,0902) saying why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flask import Response, request
from sqlalchemy.orm import Session

from pacs_node.archive import Refused
from pacs_node.attributes import InstanceAttributes, UnreadableInstance, read_attributes
from pacs_node.dicomweb import dicomweb
from pacs_node.dicomweb.dicom_json import attribute
from pacs_node.dicomweb.media import DICOM_JSON, require_dicom_json
from pacs_node.dicomweb.multipart import MultipartError, Part, parameters, read_parts
from pacs_node.dicomweb.resources import backend, base_url, check_parameters, retrieve_url, transaction
from pacs_node.index import Sender
from telerad import audit
from telerad.problems import Problem

WRONG_STUDY = 0xA900  # the instance is not of the study the request names (PS3.18 10.5.3)
AE_TITLE_LENGTH = 16


@dataclass(frozen=True)
class Stored:
    """What became of one part: its UIDs (when readable), and the failure status and comment, if refused."""

    attrs: InstanceAttributes | None
    status: int = 0
    comment: str = ""


@dicomweb.post("/studies", defaults={"study": None})
@dicomweb.post("/studies/<study>")
def store(study: str | None) -> Response:
    """Store instances (PS3.18 10.5.1)."""
    check_parameters(set())
    require_dicom_json("the store response")
    boundary = _boundary()
    with transaction() as (_session, user):
        if user.role != "station":
            raise Problem(403, f"only station accounts store instances; {user.name} is a {user.role}")
        sender = Sender(user.site_id, user.site.code, f"WEB:{user.name}"[:AE_TITLE_LENGTH])
        name = user.name
    try:
        with read_parts(request.stream, boundary) as parts:
            _check_types(parts)
            outcomes = [_store(part, sender, study) for part in parts]
    except MultipartError as exc:
        raise Problem(400, f"malformed multipart body: {exc}") from None
    with backend().archive.sessions() as session, session.begin():
        _audit(session, name, outcomes)
    stored = sum(1 for outcome in outcomes if not outcome.status)
    status = 200 if stored == len(outcomes) else 202 if stored else 409
    body = json.dumps(_response(outcomes, study, base_url()), ensure_ascii=False)
    return Response(body, status=status, mimetype=DICOM_JSON)


def _boundary() -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` request; 415 or 400 otherwise."""
    media_type, params = parameters(request.headers.get("Content-Type", ""))
    part_type = params.get("type", "application/dicom").lower()
    if media_type != "multipart/related" or part_type != "application/dicom":
        raise Problem(
            415, f"send multipart/related; type=\"application/dicom\", not {request.headers.get('Content-Type')!r}"
        )
    if not params.get("boundary"):
        raise Problem(400, "the Content-Type has no boundary parameter")
    return params["boundary"]


def _check_types(parts: list[Part]) -> None:
    for number, part in enumerate(parts, 1):
        media_type = parameters(part.content_type)[0] if part.content_type else "application/dicom"
        if media_type != "application/dicom":
            raise MultipartError(f"part {number} is {media_type}, not application/dicom")


def _store(part: Part, sender: Sender, study: str | None) -> Stored:
    """Receive one part as a C-STORE would be received."""
    data = part.data()
    try:
        attrs: InstanceAttributes | None = read_attributes(data)
    except UnreadableInstance:
        attrs = None  # the archive refuses it below, saying why
    if attrs is not None and study is not None and attrs.study_uid != study:
        return Stored(attrs, WRONG_STUDY, "the instance is of another study than the request URL's")
    try:
        backend().archive.receive(data, sender)
    except Refused as refused:
        return Stored(attrs, refused.status, refused.comment)
    return Stored(attrs)


def _response(outcomes: list[Stored], study: str | None, base: str) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 10.5.3) in the DICOM JSON model."""
    referenced, failed = [], []
    for outcome in outcomes:
        attrs = outcome.attrs
        item = dict([attribute("ReferencedSOPClassUID", attrs.sop_class_uid if attrs else None),
                     attribute("ReferencedSOPInstanceUID", attrs.sop_instance_uid if attrs else None)])
        if outcome.status:
            item.update([attribute("FailureReason", outcome.status), attribute("ErrorComment", outcome.comment[:64])])
            failed.append(item)
        elif attrs is not None:
            item.update([attribute("RetrieveURL", retrieve_url(base, attrs.study_uid, attrs.series_uid,
                                                              attrs.sop_instance_uid))])
            referenced.append(item)
    studies = {outcome.attrs.study_uid for outcome in outcomes if outcome.attrs and not outcome.status}
    sequences = [("ReferencedSOPSequence", referenced), ("FailedSOPSequence", failed)]
    document = dict(attribute(keyword, items) for keyword, items in sequences if items)
    if study is not None or len(studies) == 1:
        document.update([attribute("RetrieveURL", retrieve_url(base, study or studies.pop()))])
    return dict(sorted(document.items()))


def _audit(session: Session, actor: str, outcomes: list[Stored]) -> None:
    """One audit event per study stored into (counts of stored and refused), one per unreadable part."""
    stored = Counter(outcome.attrs.study_uid for outcome in outcomes if outcome.attrs and not outcome.status)
    refused = Counter(outcome.attrs.study_uid for outcome in outcomes if outcome.attrs and outcome.status)
    for study_uid in {*stored, *refused}:
        audit.record(session, actor, "study.stored", "study", study_uid, via="dicomweb",
                     stored=stored[study_uid], refused=refused[study_uid])
    for number, outcome in enumerate(outcomes, 1):
        if outcome.attrs is None:
            audit.record(session, actor, "instance.refused", "instance", "(unreadable)", via="dicomweb",
                         part=number, status=outcome.status, reason=outcome.comment)
