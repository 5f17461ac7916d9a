"""The canonical form of a signed report, its detached CMS signature, and checking both against the database.

What a reader signs is a JSON document (:func:`report_document`): the content (template, structured fields,
findings, impression, critical flag and category, the addenda already signed and, for an addendum's signature,
that addendum), the study and patient identifiers, the sending station and the reading centre, the signer (user
name, display name, role of the signature, SHA-256 fingerprint of the certificate) and the server's time of
signature (ISO 8601, UTC). :func:`reports.signing.sign` adds ``pdf_sha256``, the SHA-256 of the signed PDF, so
the detached signature covers the PDF as well.

Canonical form (:func:`canonical_bytes`): UTF-8 JSON with object keys sorted, no insignificant whitespace,
non-ASCII characters written as themselves (not ``\\u`` escapes), no NaN or infinity. For the JSON Telerad signs —
ASCII keys, strings, integers, booleans, null and finite numbers — this is the JSON Canonicalization Scheme of
RFC 8785 except for how floats are spelt (Python's shortest repr, e.g. ``72.0`` where JCS writes ``72``); the exact
text signed is stored with the signature, so verifying never depends on serialising again.

The detached signature is a CMS SignedData (RFC 5652 section 5, content not encapsulated) over those bytes, with
SHA-256 and the signed attributes content-type, message-digest, signing-time (the server time of signature),
CMS algorithm protection (RFC 6211) and ESS signing-certificate-v2 (RFC 5035).

:func:`verify_signature` checks (a) the signature over the stored bytes with the stored certificate's public key,
(b) that the certificate leads to a trusted CA and was valid at the time of signature, and (c) the stored document
against the one rebuilt now from the database, naming each field that differs by its dotted path
(``impression``, ``fields.rhythm``, ``patient.name``, ``addenda[0].text``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms
from cryptography import x509
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.validation.generic_cms import validate_sig_integrity
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from reading_queue.tasks import ReadingTask
from reports.keys import ReaderSigner, certificate_problem, run_coroutine, to_asn1
from reports.models import Report, ReportAddendum, ReportSignature
from telerad.sites import Site
from telerad.users import User

#: Names this version of the canonical document; a future layout gets a new one.
FORMAT = "telerad-report-signature/1"
#: The roles of a signature (``ReportSignature.role``).
ROLES = ("author", "countersign", "cosign")


class _Absent:
    """The value of a field present on one side of a comparison only."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


@dataclass(frozen=True)
class FieldChange:
    """One field whose value in the database differs from the value signed."""

    path: str
    signed: Any
    now: Any

    def __str__(self) -> str:
        return f"{self.path}: signed {_show(self.signed)}, now {_show(self.now)}"


@dataclass
class Verification:
    """The outcome of checking one signature: every problem found and every field changed since."""

    signature_id: int
    report_id: int
    study_uid: str
    role: str
    signer: str
    signed_at: datetime
    problems: list[str] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the signature, its certificate, the record and the PDF are all as signed."""
        return not self.problems and not self.changes

    def lines(self) -> list[str]:
        """What is wrong, one line each: problems first, then the changed fields."""
        return self.problems + [f"changed since signature: {change}" for change in self.changes]


def report_document(
    session: Session,
    report: Report,
    *,
    role: str,
    signer: User,
    fingerprint: str,
    signed_at: datetime,
    addendum: ReportAddendum | None = None,
) -> dict[str, Any]:
    """The document a signature covers, built from the database as it is now (see the module's docstring).

    ``fingerprint`` is the SHA-256 of the signer's certificate; ``signed_at`` the server's time of signature
    (``telerad.clock.now()``); ``addendum`` the addendum signed, if this signature is an addendum's (its own time
    is ``signed_at``). Other addenda count as already signed when signed no later than ``signed_at``. The reading
    centre is the reading task's centre, or the signer's site for a report without a task.
    """
    if role not in ROLES:
        raise ValueError(f"unknown signature role {role!r}: expected one of {', '.join(ROLES)}")
    study = session.get_one(Study, report.study_pk)
    patient = study.patient
    station = session.get_one(Site, study.site_id)
    task = session.get(ReadingTask, report.task_id) if report.task_id is not None else None
    centre = session.get_one(Site, task.centre_site_id if task is not None else signer.site_id)
    earlier = session.scalars(
        select(ReportAddendum)
        .where(ReportAddendum.report_id == report.id, ReportAddendum.signed_at <= signed_at)
        .order_by(ReportAddendum.signed_at, ReportAddendum.id)
    )
    return {
        "format": FORMAT,
        "report_id": report.id,
        "template": report.template_id,
        "fields": report.fields or {},
        "findings": report.findings,
        "impression": report.impression,
        "critical": report.critical,
        "critical_category": report.critical_category,
        "addenda": [
            {**_addendum(session, item), "signed_at": iso_time(item.signed_at)}  # type: ignore[arg-type]
            for item in earlier if addendum is None or item.id != addendum.id
        ],
        "addendum": _addendum(session, addendum) if addendum is not None else None,
        "study": {"uid": study.study_uid, "accession_number": study.accession_number, "date": study.study_date},
        "patient": {
            "id": patient.patient_id, "issuer": patient.issuer, "name": patient.name, "sex": patient.sex,
            "birth_date": patient.birth_date,
        },
        "station": {"code": station.code, "name": station.name},
        "centre": {"code": centre.code, "name": centre.name},
        "signer": {"name": signer.name, "display_name": signer.display_name, "role": role,
                   "fingerprint": fingerprint},
        "signed_at": iso_time(signed_at),
    }


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The canonical form of ``document``: sorted keys, no insignificant whitespace, UTF-8 (see the module)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_detached(data: bytes, signer: ReaderSigner, signed_at: datetime) -> bytes:
    """A detached CMS SignedData (RFC 5652) over ``data`` by ``signer``, DER; signing-time is ``signed_at``."""
    content = run_coroutine(
        signer.cms_signer().async_sign_general_data(
            data, "sha256", detached=True, signed_attr_settings=PdfCMSSignedAttributes(signing_time=signed_at)
        )
    )
    return content.dump()


def verify_signature(
    signature: ReportSignature, current: dict[str, Any], *, trust_roots: list[x509.Certificate]
) -> Verification:
    """Check one stored signature: (a) the detached signature over the stored canonical bytes with the stored
    certificate's key, (b) the certificate against ``trust_roots`` at the time of signature, (c) the stored
    document against ``current``, rebuilt now by :func:`report_document` (see the module's docstring)."""
    result = Verification(
        signature_id=signature.id, report_id=signature.report_id, study_uid=current["study"]["uid"],
        role=signature.role, signer=current["signer"]["name"], signed_at=signature.signed_at,
    )
    try:
        certificate = x509.load_pem_x509_certificate(signature.certificate.encode())
    except ValueError:
        result.problems.append("certificate: the stored certificate is not a readable PEM certificate")
        return result
    data = signature.canonical.encode()
    carried, problem = _integrity(data, signature.signature, certificate)
    if problem is not None:
        result.problems.append(f"signature: {problem}")
    problem = certificate_problem(certificate, carried, trust_roots, signature.signed_at)
    if problem is not None:
        result.problems.append(f"certificate: {problem}")
    try:
        signed = json.loads(data)
    except ValueError:
        result.problems.append("canonical: the stored canonical text is not JSON")
        return result
    result.changes = differences(signed, current)
    return result


def differences(signed: Any, now: Any, path: str = "") -> list[FieldChange]:
    """Every leaf where ``now`` differs from ``signed``, by dotted path (list items as ``[i]``)."""
    if isinstance(signed, dict) and isinstance(now, dict):
        found = []
        for key in sorted(signed.keys() | now.keys()):
            inner = f"{path}.{key}" if path else key
            found += differences(signed.get(key, ABSENT), now.get(key, ABSENT), inner)
        return found
    if isinstance(signed, list) and isinstance(now, list):
        found = []
        for index in range(max(len(signed), len(now))):
            found += differences(
                signed[index] if index < len(signed) else ABSENT, now[index] if index < len(now) else ABSENT,
                f"{path}[{index}]",
            )
        return found
    return [] if _same(signed, now) else [FieldChange(path or "(document)", signed, now)]


def iso_time(moment: datetime) -> str:
    """``moment`` in ISO 8601, UTC, microseconds: ``2026-03-04T03:30:15.000000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _integrity(data: bytes, signature: str, certificate: x509.Certificate) -> tuple[list[x509.Certificate], str | None]:
    """The certificates the CMS signature carries, and why it does not sign ``data`` with ``certificate``'s key
    (``None``: it does)."""
    try:
        signed_data = cms.ContentInfo.load(base64.b64decode(signature, validate=True))["content"]
        signer_info = signed_data["signer_infos"][0]
        digest = hashlib.new(signer_info["digest_algorithm"]["algorithm"].native, data).digest()
        intact, valid = validate_sig_integrity(signer_info, to_asn1(certificate), "data", digest)
        carried = [x509.load_der_x509_certificate(item.chosen.dump()) for item in signed_data["certificates"]]
    except Exception as exc:  # noqa: BLE001 - a damaged signature value fails in many ways; all mean "invalid"
        return [], f"the stored signature cannot be read as CMS SignedData ({type(exc).__name__})"
    if not intact:
        return carried, "the stored canonical text does not match its signature (digest differs)"
    if not valid:
        return carried, "the signature was not made with the key of the stored certificate"
    if certificate not in carried:
        return carried, "the stored certificate is not the one the signature carries"
    return carried, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b and (type(a) is type(b) or {type(a), type(b)} <= {int, float})


def _show(value: Any) -> str:
    return repr(value) if value is ABSENT else json.dumps(value, ensure_ascii=False)


def _addendum(session: Session, addendum: ReportAddendum) -> dict[str, Any]:
    return {"id": addendum.id, "text": addendum.text, "author": session.get_one(User, addendum.author_id).name}
