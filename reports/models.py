"""The report tables: a study's report, its signed parts, addenda, critical findings, keys and deliveries.

A report is a medical record. Its states follow DICOM SR's completion and
verification and FHIR's DiagnosticReport.status: ``draft`` (being written,
autosaved), ``preliminary`` (signed by a reader whose site requires a
countersignature, waiting for a senior), ``final`` (signed and, where
required, countersigned: never edited again) and ``amended`` (final with one
or more signed addenda). Every signature is an append-only
:class:`ReportSignature` row holding the exact canonical bytes that were
signed; nothing updates or deletes one.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from telerad.db import Base, BigId


class ReportState(enum.StrEnum):
    """Where a report is in its life (FHIR DiagnosticReport.status)."""

    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"


class Report(Base):
    """The one report of a study: structured fields from its template, findings and impression."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("reading_tasks.id"), index=True)
    template_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=ReportState.DRAFT, index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    critical: Mapped[bool] = mapped_column(default=False)
    critical_category: Mapped[str] = mapped_column(String(64), default="")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revision: Mapped[int] = mapped_column(default=0)  # bumped by every save; a stale autosave is refused
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


class ReportAddendum(Base):
    """A signed addition to a final report, shown beside the original (which never changes)."""

    __tablename__ = "report_addenda"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    signed_at: Mapped[datetime | None]


class ReportSignature(Base):
    """One signature: the canonical bytes signed, the detached signature, the certificate, the signed PDF.

    ``role`` is ``author``, ``countersign`` (a senior's, making a junior's report
    final) or ``cosign`` (a provincial consultant's); ``addendum_id`` is set when
    the signed part is an addendum.
    """

    __tablename__ = "report_signatures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    addendum_id: Mapped[int | None] = mapped_column(ForeignKey("report_addenda.id"))
    role: Mapped[str] = mapped_column(String(16))
    signer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime]
    canonical: Mapped[str] = mapped_column(Text)  # the exact UTF-8 JSON text that was signed
    signature: Mapped[str] = mapped_column(Text)  # base64 of the detached signature
    algorithm: Mapped[str] = mapped_column(String(32))
    certificate: Mapped[str] = mapped_column(Text)  # PEM of the signer's certificate
    pdf_key: Mapped[str | None] = mapped_column(String(160))  # storage key of the signed PDF
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))


class SigningKey(Base):
    """A reader's key pair: the private key encrypted (PKCS#8) with a key only the reader can unlock."""

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_user_revoked", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    private_key: Mapped[str] = mapped_column(Text)  # encrypted PEM
    certificate: Mapped[str] = mapped_column(Text)  # PEM, issued by the hospital's CA or the demo CA
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the certificate (DER)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class CriticalNotice(Base):
    """A critical finding told to the sending station, waiting for its acknowledgement."""

    __tablename__ = "critical_notices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    category: Mapped[str] = mapped_column(String(64))
    notified_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    escalated_at: Mapped[datetime | None]


class DeliveryState(enum.StrEnum):
    """Where one delivery of a signed report is."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # for good, after the last retry; ``last_error`` says why


class ReportDelivery(Base):
    """One delivery of a signed report: to the station's DICOM AE (Encapsulated PDF, Basic Text SR) or a webhook."""

    __tablename__ = "report_deliveries"
    __table_args__ = (Index("ix_report_deliveries_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    signature_id: Mapped[int] = mapped_column(ForeignKey("report_signatures.id"))
    channel: Mapped[str] = mapped_column(String(16))  # "dicom-pdf", "dicom-sr" or "webhook"
    target: Mapped[str] = mapped_column(String(200))  # "AE@host:port" or the webhook URL
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
