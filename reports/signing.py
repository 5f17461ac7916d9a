"""Signing a report, and verifying every signature later (``telerad report verify``).

:func:`sign` is what a reader's signature does, after the reader re-enters their password: unlock (or make) the
reader's key (:mod:`reports.keys`), build the canonical document (:mod:`reports.canonical`) at the server's time,
draw the report PDF and sign it as a PAdES signature (:mod:`reports.pdf`), keep the signed PDF in the storage
area, sign the document's canonical bytes with the PDF's SHA-256 added (``pdf_sha256``: the detached CMS signature
binds the PDF too) and append a :class:`~reports.models.ReportSignature` row. It changes no report
state and delivers nothing: the caller does both around it, in the same transaction.

:func:`verify` checks a stored signature end to end: the detached signature and its certificate, every field
against the database now, and the stored PDF (its SHA-256 and its PDF signature).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Study
from pacs_node.node import storage_for
from pacs_node.storage import FileStorage
from reports import canonical, keys, pdf
from reports.canonical import Verification
from reports.keys import WrongPassword
from reports.models import Report, ReportAddendum, ReportSignature
from telerad import audit
from telerad.config import Config, CriticalCategory
from telerad.sites import Site
from telerad.users import User

#: The reason written into the PDF signature, per role of the signature.
REASONS = {
    "author": "报告医师签名 Report signed by its author",
    "countersign": "上级医师审核签名 Report countersigned",
    "cosign": "会诊专家签名 Report co-signed in consultation",
}


def sign(
    session: Session,
    config: Config,
    storage: FileStorage,
    report: Report,
    user: User,
    password: str,
    *,
    role: str,
    addendum: ReportAddendum | None = None,
    at: datetime,
) -> ReportSignature:
    """Sign ``report`` (or its ``addendum``) as ``user`` in ``role`` at ``at``, the server's time; see the module.

    A wrong ``password`` raises :class:`WrongPassword` with nothing written but the audit event of the failed
    attempt (added to ``session``: commit it to keep the record). Returns the new signature row.
    """
    if role not in canonical.ROLES:
        raise ValueError(f"unknown signature role {role!r}: expected one of {', '.join(canonical.ROLES)}")
    try:
        signer = keys.signer_for(session, config, user, password)
    except WrongPassword:
        audit.record(session, user.name, "report.sign_failed", "report", str(report.id), role=role,
                     reason="wrong password")
        raise
    document = canonical.report_document(
        session, report, role=role, signer=user, fingerprint=signer.fingerprint, signed_at=at, addendum=addendum
    )
    study = session.get_one(Study, report.study_pk)
    station = session.get_one(Site, study.site_id)
    centre = session.scalars(select(Site).where(Site.code == document["centre"]["code"])).one()
    strip = pdf.study_rhythm_strip(session, storage, study)
    rendered = pdf.render_report_pdf(
        document,
        station_name=_display(station),
        centre_name=_display(centre),
        key_images=pdf.key_images(session, storage, study) if strip is None else [],
        ecg_strip=strip,
        language=config.service.language,
        timezone=config.reading.timezone,
        critical_name=next((_display(category) for category in config.reports.critical_categories
                            if category.code == report.critical_category), ""),
    )
    signed_pdf = pdf.sign_pdf(rendered, signer, reason=REASONS[role], location=centre.name, signed_at=at)
    stored = storage.put(signed_pdf)
    data = canonical.canonical_bytes({**document, "pdf_sha256": stored.sha256})
    detached = canonical.sign_detached(data, signer, at)
    row = ReportSignature(
        report_id=report.id, addendum_id=addendum.id if addendum is not None else None, role=role,
        signer_id=user.id, signed_at=at, canonical=data.decode(), signature=base64.b64encode(detached).decode(),
        algorithm=signer.algorithm, certificate=signer.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        pdf_key=stored.key, pdf_sha256=stored.sha256,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, user.name, "report.signed", "report", str(report.id), signature_id=row.id, role=role,
        study_uid=study.study_uid, addendum_id=row.addendum_id, fingerprint=signer.fingerprint,
        pdf_sha256=stored.sha256,
    )
    return row


def verify(session: Session, config: Config, signature: ReportSignature) -> Verification:
    """Check ``signature`` end to end (see the module); the result names every problem and changed field."""
    return _verify(session, config, signature, storage_for(config))


def verify_study(session: Session, config: Config, study_uid: str) -> list[Verification]:
    """Check every signature of the study's report, oldest first; raises ``LookupError`` for an unknown study."""
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        raise LookupError(f"no study {study_uid} in the archive")
    storage = storage_for(config)
    signatures = session.scalars(
        select(ReportSignature).join(Report, Report.id == ReportSignature.report_id)
        .where(Report.study_pk == study.id).order_by(ReportSignature.id)
    ).all()
    return [_verify(session, config, signature, storage) for signature in signatures]


def verify_all(session: Session, config: Config) -> Iterator[Verification]:
    """Check every signature in the archive, oldest first."""
    storage = storage_for(config)
    for signature in session.scalars(select(ReportSignature).order_by(ReportSignature.id)).all():
        yield _verify(session, config, signature, storage)


def _verify(session: Session, config: Config, signature: ReportSignature, storage: FileStorage) -> Verification:
    report = session.get_one(Report, signature.report_id)
    signer = session.get_one(User, signature.signer_id)
    addendum = session.get(ReportAddendum, signature.addendum_id) if signature.addendum_id is not None else None
    try:
        certificate = x509.load_pem_x509_certificate(signature.certificate.encode())
        stated = keys.fingerprint(certificate)
    except ValueError:
        certificate, stated = None, "(unreadable certificate)"
    current = canonical.report_document(
        session, report, role=signature.role, signer=signer, fingerprint=stated, signed_at=signature.signed_at,
        addendum=addendum,
    )
    current["pdf_sha256"] = signature.pdf_sha256
    roots = keys.trust_roots(config)
    result = canonical.verify_signature(signature, current, trust_roots=roots)
    if signature.pdf_key is None or signature.pdf_sha256 is None:
        result.problems.append("pdf: no signed PDF is recorded")
    elif not storage.exists(signature.pdf_key):
        result.problems.append(f"pdf: the signed PDF {signature.pdf_key} is missing from the storage area")
    else:
        data = storage.read(signature.pdf_key)
        if hashlib.sha256(data).hexdigest() != signature.pdf_sha256:
            result.problems.append("pdf: the stored PDF's SHA-256 differs from the one recorded at signature")
        if certificate is not None:
            problems = pdf.validate_pdf(data, trust_roots=roots, moment=signature.signed_at, certificate=certificate)
            result.problems += [f"pdf: {problem}" for problem in problems]
    return result


def _display(named: Site | CriticalCategory) -> str:
    return f"{named.name} {named.name_en}" if named.name_en else named.name
