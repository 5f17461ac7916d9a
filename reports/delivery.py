"""Delivering a signed report back to the station: one :class:`~reports.models.ReportDelivery` per channel.

When a report is signed (the ``report.signed`` event, handled in :mod:`reports.delivery_jobs`),
:func:`create_deliveries` makes one delivery per channel for the signature — once, however often the event
arrives — and :func:`deliver_due` sends what is due:

- ``dicom-pdf``: the signed PDF as an Encapsulated PDF instance (:func:`reports.dicom_document.encapsulated_pdf`)
  sent by C-STORE (PS3.4 B.2, PS3.7 9.1.1) as the node's AE title to the station's own storage SCP
  (``returns_to`` of the study's site, else of its parent). Success is the C-STORE status 0x0000, or a warning
  (0xB000, 0xB006, 0xB007: stored, with coercion); anything else is a failure with the status and its meaning.
- ``dicom-sr``: the same as a Basic Text SR (``delivery.send_text_sr``);
- ``webhook``: the FHIR R4 DiagnosticReport (``reports.fhir``) POSTed as ``application/fhir+json`` to
  ``delivery.webhook_url``.

The state lives in the table, one row per delivery: ``pending`` (with ``next_attempt_at``), ``sent`` or
``failed`` for good, ``last_error`` saying why. A failed attempt is tried again after each pause of
``delivery.retry_minutes`` in turn; after the last, the delivery fails. Deliveries are taken in one short
transaction (``SELECT ... FOR UPDATE SKIP LOCKED``, pushed back by a lease so no two workers send the same one)
and sent outside it: a slow station never holds the database, and nothing here runs in the signing transaction.
Every attempt is audited; a delivery sent (or failed for good) is an event on the task's timeline.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.status import GENERAL_STATUS, STORAGE_SERVICE_CLASS_STATUS
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.index import Instance, Series, Study
from pacs_node.storage import FileStorage
from reading_queue.tasks import ReadingTask, record
from reports.dicom_document import (
    BASIC_TEXT_SR_STORAGE, ENCAPSULATED_PDF_STORAGE, Evidence, basic_text_sr, encapsulated_pdf, study_source,
)
from reports.fhir import diagnostic_report
from reports.models import DeliveryState, Report, ReportAddendum, ReportDelivery, ReportSignature
from reports.templates import load_templates
from telerad import audit
from telerad.config import Config
from telerad.sites import Site
from telerad.users import User

log = logging.getLogger(__name__)

DICOM_PDF, DICOM_SR, WEBHOOK = "dicom-pdf", "dicom-sr", "webhook"
DICOM_CHANNELS = (DICOM_PDF, DICOM_SR)
#: The report series of a study (new series of their own, numbered out of the way of the modality's).
SERIES_NUMBERS = {DICOM_PDF: 9901, DICOM_SR: 9902}
ACTOR = "system:delivery"
#: C-STORE statuses that mean the instance was stored (PS3.4 B.2.3): success, and the coercion warnings.
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
#: The transfer syntaxes offered (PS3.5 A.1, A.2): every storage SCP accepts Implicit VR Little Endian.
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


class NoReturnAddress(Exception):
    """Neither the study's site nor its parent has a DICOM return address."""


@dataclass(frozen=True)
class Address:
    """A station's storage SCP (``returns_to`` in the configuration)."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def return_address(session: Session, site: Site) -> Address:
    """Where ``site`` receives reports: its own return address, else its parent's."""
    for candidate in (site, session.get(Site, site.parent_id) if site.parent_id else None):
        if candidate is not None and candidate.return_ae_title and candidate.return_host and candidate.return_port:
            return Address(candidate.return_ae_title, candidate.return_host, candidate.return_port)
    raise NoReturnAddress(f"no return address configured for site {site.code}")


def channels(config: Config) -> list[str]:
    """The channels a signed report goes out on, as configured."""
    wanted = [DICOM_PDF]
    if config.delivery.send_text_sr:
        wanted.append(DICOM_SR)
    if config.delivery.webhook_url:
        wanted.append(WEBHOOK)
    return wanted


def create_deliveries(session: Session, config: Config, signature_id: int, at: datetime) -> list[ReportDelivery]:
    """The signature's deliveries, one per channel, made now unless they exist (within the caller's transaction).

    The signature row is locked first, so two workers handling the same event one after the other find the
    rows the first made. A DICOM delivery to a site without any return address is failed at once, with the reason.
    """
    signature = session.scalar(select(ReportSignature).where(ReportSignature.id == signature_id).with_for_update())
    if signature is None:
        raise LookupError(f"report signature {signature_id} does not exist")
    existing = {
        delivery.channel: delivery
        for delivery in session.scalars(select(ReportDelivery).where(ReportDelivery.signature_id == signature_id))
    }
    report = session.get(Report, signature.report_id)
    study = session.get(Study, report.study_pk)
    made = []
    for channel in channels(config):
        if channel in existing:
            made.append(existing[channel])
            continue
        delivery = ReportDelivery(
            report_id=report.id, signature_id=signature.id, channel=channel, target="", state=DeliveryState.PENDING,
            attempts=0, last_error="", sop_instance_uid="", created_at=at, next_attempt_at=at, sent_at=None,
        )
        if channel in DICOM_CHANNELS:
            delivery.sop_instance_uid = _uid(study.study_uid, channel, signature)
            try:
                delivery.target = str(return_address(session, session.get(Site, study.site_id)))
            except NoReturnAddress as exc:
                delivery.state, delivery.last_error, delivery.next_attempt_at = DeliveryState.FAILED, str(exc), None
        else:
            delivery.target = config.delivery.webhook_url[:200]
        session.add(delivery)
        session.flush()
        if delivery.state == DeliveryState.FAILED:
            audit.record(session, ACTOR, "report.delivery_failed", "report_delivery", str(delivery.id),
                         study_uid=study.study_uid, channel=channel, reason=delivery.last_error)
            _on_timeline(session, report, "report_delivery_failed", delivery)
        made.append(delivery)
    return made


@dataclass
class Parcel:
    """What one attempt sends, gathered in the short transaction that takes the delivery."""

    delivery_id: int
    channel: str
    target: str
    study_uid: str
    sop_instance_uid: str = ""
    signed_at: datetime | None = None
    signer: str = ""
    organization: str = ""
    instance_number: int = 1
    pdf_key: str | None = None
    pdf_sha256: str | None = None
    source_key: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    findings: str = ""
    impression: str = ""
    addenda: list[str] = field(default_factory=list)
    fhir: dict[str, Any] | None = None
    problem: str | None = None  # why it cannot be sent (found while gathering)


def take_due(
    sessions: sessionmaker, config: Config, storage: FileStorage, at: datetime, *, signature_id: int | None = None,
    batch: int = 50,
) -> list[Parcel]:
    """Take the pending deliveries due at ``at`` (of one signature, or all), leased while they are sent."""
    lease = at + timedelta(seconds=max(60.0, 4 * config.delivery.timeout))
    with sessions() as session, session.begin():
        query = (
            select(ReportDelivery)
            .where(ReportDelivery.state == DeliveryState.PENDING, ReportDelivery.next_attempt_at <= at)
            .order_by(ReportDelivery.next_attempt_at, ReportDelivery.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        if signature_id is not None:
            query = query.where(ReportDelivery.signature_id == signature_id)
        taken = session.scalars(query).all()
        parcels = []
        for delivery in taken:
            delivery.next_attempt_at = lease
            parcels.append(_gather(session, config, storage, delivery))
    return parcels


def deliver_due(
    sessions: sessionmaker, config: Config, storage: FileStorage, at: datetime, *, signature_id: int | None = None
) -> dict[str, int]:
    """Send every due delivery (of one signature, or all) and record each outcome; returns counts by state."""
    counts = {"sent": 0, "pending": 0, "failed": 0}
    while parcels := take_due(sessions, config, storage, at, signature_id=signature_id):  # taken ones are leased: this ends
        for parcel in parcels:
            error, detail = send(parcel, config, storage)
            counts[record_attempt(sessions, config, parcel, at, error, detail)] += 1
    return counts


def send(parcel: Parcel, config: Config, storage: FileStorage) -> tuple[str | None, str]:
    """Send one parcel: ``(None, detail)`` when it arrived, ``(reason, "")`` when not. Never raises."""
    if parcel.problem:
        return parcel.problem, ""
    try:
        if parcel.channel == WEBHOOK:
            return post_fhir(parcel.target, parcel.fhir or {}, config.delivery.timeout), ""
        address = _parse_target(parcel.target)
        dataset = build_dataset(parcel, config, storage)
    except (OSError, ValueError) as exc:
        return f"cannot build the report object: {exc}", ""
    return c_store(dataset, address, config.dicom.ae_title, config.delivery.timeout)


def build_dataset(parcel: Parcel, config: Config, storage: FileStorage) -> Dataset:
    """The DICOM object of a DICOM parcel; raises ``OSError`` (storage) or ``ValueError`` (content)."""
    if parcel.source_key is None:
        raise ValueError(f"study {parcel.study_uid} has no stored instance")
    source = study_source(storage.read(parcel.source_key))
    common: dict[str, Any] = dict(
        signed_at=parcel.signed_at, signer=parcel.signer, series_number=SERIES_NUMBERS[parcel.channel],
        instance_number=parcel.instance_number, language=config.service.language,
        timezone=ZoneInfo(config.reading.timezone), organization=parcel.organization, evidence=parcel.evidence,
        series_uid=generate_uid(entropy_srcs=[parcel.study_uid, parcel.channel, "telerad report series"]),
        sop_instance_uid=parcel.sop_instance_uid,
    )
    if parcel.channel == DICOM_SR:
        return basic_text_sr(source, findings=parcel.findings, impression=parcel.impression, addenda=parcel.addenda,
                             **common)
    if not parcel.pdf_key:
        raise ValueError("the signature has no signed PDF")
    pdf = storage.read(parcel.pdf_key)
    if parcel.pdf_sha256 and hashlib.sha256(pdf).hexdigest() != parcel.pdf_sha256:
        raise ValueError("the stored PDF does not match the SHA-256 recorded at signing; not sent")
    return encapsulated_pdf(source, pdf, **common)


def c_store(dataset: Dataset, address: Address, calling_ae: str, timeout: float) -> tuple[str | None, str]:
    """Send ``dataset`` by C-STORE (PS3.4 B.2) on an association of its own; ``(error, detail)``."""
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(dataset.SOPClassUID, list(TRANSFER_SYNTAXES))
    assoc = ae.associate(address.host, address.port, ae_title=address.ae_title)
    if not assoc.is_established:
        return _association_failure(assoc, address, timeout), ""
    try:
        if not assoc.accepted_contexts:
            return f"{address.ae_title} does not accept {_sop_name(dataset.SOPClassUID)}", ""
        status = assoc.send_c_store(dataset)
    except (ValueError, RuntimeError, OSError) as exc:
        return f"C-STORE could not be sent: {exc}", ""
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        return "no C-STORE response from the station (connection lost, aborted or timed out)", ""
    code = int(status.Status)
    meaning = (STORAGE_SERVICE_CLASS_STATUS.get(code) or GENERAL_STATUS.get(code) or ("", "unknown status"))[1]
    comment = f": {status.ErrorComment}" if status.get("ErrorComment") else ""
    if code in STORED:
        return None, "" if code == 0 else f"status 0x{code:04X} {meaning}{comment}"
    return f"status 0x{code:04X} {meaning}{comment}", ""


def post_fhir(url: str, resource: dict[str, Any], timeout: float) -> str | None:
    """POST a FHIR resource as ``application/fhir+json``; the error, or ``None`` on a 2xx answer."""
    try:
        request = urllib.request.Request(
            url, data=json.dumps(resource, ensure_ascii=False).encode(), method="POST",
            headers={"Content-Type": "application/fhir+json; charset=utf-8", "Accept": "application/fhir+json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured receiver
            response.read()
    except OSError as exc:  # urllib's HTTPError (a 4xx/5xx answer) is an OSError too
        return f"webhook: {exc}"
    except (http.client.HTTPException, ValueError) as exc:
        return f"webhook: {type(exc).__name__}: {exc}"
    return None


def record_attempt(
    sessions: sessionmaker, config: Config, parcel: Parcel, at: datetime, error: str | None, detail: str = ""
) -> str:
    """Write one attempt's outcome: sent, pending with the next try, or failed after the last. Returns the state."""
    pauses = config.delivery.retry_minutes
    with sessions() as session, session.begin():
        delivery = session.scalar(
            select(ReportDelivery).where(ReportDelivery.id == parcel.delivery_id).with_for_update()
        )
        if delivery.state != DeliveryState.PENDING:  # another worker finished it after our lease ran out
            return delivery.state
        delivery.attempts += 1
        if error is None:
            delivery.state, delivery.sent_at, delivery.next_attempt_at = DeliveryState.SENT, at, None
            delivery.last_error = detail
        elif delivery.attempts <= len(pauses):
            delivery.last_error = error
            delivery.next_attempt_at = at + timedelta(minutes=pauses[delivery.attempts - 1])
        else:
            delivery.state, delivery.last_error, delivery.next_attempt_at = DeliveryState.FAILED, error, None
        audit.record(
            session, ACTOR, "report.delivery_attempted", "report_delivery", str(delivery.id),
            study_uid=parcel.study_uid, channel=delivery.channel, target=delivery.target, attempt=delivery.attempts,
            outcome=delivery.state, error=error or "",
            next_attempt_at=delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        )
        if delivery.state != DeliveryState.PENDING:
            report = session.get(Report, delivery.report_id)
            kind = "report_delivered" if delivery.state == DeliveryState.SENT else "report_delivery_failed"
            _on_timeline(session, report, kind, delivery)
        if error is not None:
            log.warning("report delivery %d (%s to %s) attempt %d: %s", delivery.id, delivery.channel,
                        delivery.target, delivery.attempts, error)
        return delivery.state


def _gather(session: Session, config: Config, storage: FileStorage, delivery: ReportDelivery) -> Parcel:
    """Everything one attempt needs, read now (the sending itself happens outside the transaction)."""
    signature = session.get(ReportSignature, delivery.signature_id)
    report = session.get(Report, delivery.report_id)
    study = session.get(Study, report.study_pk)
    parcel = Parcel(delivery.id, delivery.channel, delivery.target, study.study_uid, delivery.sop_instance_uid)
    if delivery.channel == WEBHOOK:
        try:  # the signed PDF goes inline (presentedForm), so the receiver needs nothing more from us
            parcel.fhir = diagnostic_report(session, report, storage=storage, timezone=config.reading.timezone,
                                            templates=load_templates(config.reports.templates_dir))
        except (OSError, LookupError, ValueError) as exc:
            parcel.problem = f"the FHIR DiagnosticReport could not be made: {exc}"
        return parcel
    if delivery.channel in DICOM_CHANNELS:
        try:
            address = return_address(session, session.get(Site, study.site_id))
        except NoReturnAddress as exc:
            parcel.problem = str(exc)
        else:
            parcel.target = delivery.target = str(address)  # a station's corrected address is used on the next try
    signer = session.get(User, signature.signer_id)
    signer_site = session.get(Site, signer.site_id)
    parcel.signed_at = signature.signed_at
    parcel.signer = signer.display_name or signer.name
    parcel.organization = signer_site.name
    parcel.pdf_key, parcel.pdf_sha256 = signature.pdf_key, signature.pdf_sha256
    earlier = session.scalars(
        select(ReportSignature.id).where(ReportSignature.report_id == report.id, ReportSignature.id <= signature.id)
    ).all()
    parcel.instance_number = len(earlier)
    rows = session.execute(
        select(Series.series_uid, Instance.sop_class_uid, Instance.sop_instance_uid, Instance.storage_key)
        .join(Series, Instance.series_pk == Series.id)
        .where(Series.study_pk == study.id)
        .order_by(Instance.id)
    ).all()
    parcel.source_key = rows[0].storage_key if rows else None
    parcel.evidence = [Evidence(series, sop_class, uid) for series, sop_class, uid, _ in rows]
    parcel.findings, parcel.impression = report.findings, report.impression
    if signature.addendum_id is not None:
        parcel.addenda = list(session.scalars(
            select(ReportAddendum.text)
            .where(ReportAddendum.report_id == report.id, ReportAddendum.id <= signature.addendum_id)
            .order_by(ReportAddendum.id)
        ))
    return parcel


def _on_timeline(session: Session, report: Report, kind: str, delivery: ReportDelivery) -> None:
    """A delivery sent (or failed for good) as an event on the task's timeline, for turnaround to delivery."""
    if report.task_id is None:
        return
    task = session.get(ReadingTask, report.task_id)
    record(session, task, kind, ACTOR, delivery_id=delivery.id, channel=delivery.channel, target=delivery.target,
           signature_id=delivery.signature_id, attempts=delivery.attempts, error=delivery.last_error)


def _uid(study_uid: str, channel: str, signature: ReportSignature) -> str:
    """The object's SOP Instance UID, the same on every try (so a station receiving it twice keeps one copy)."""
    return generate_uid(entropy_srcs=[study_uid, channel, str(signature.id), signature.pdf_sha256 or "",
                                      signature.signed_at.isoformat()])


def _parse_target(target: str) -> Address:
    ae_title, _, rest = target.partition("@")
    host, _, port = rest.rpartition(":")
    if not ae_title or not host or not port.isdigit():
        raise ValueError(f"not a DICOM address: {target!r}")
    return Address(ae_title, host, int(port))


def _sop_name(uid: str) -> str:
    return {ENCAPSULATED_PDF_STORAGE: "Encapsulated PDF Storage", BASIC_TEXT_SR_STORAGE: "Basic Text SR"}.get(uid, uid)


def _association_failure(assoc: Any, address: Address, timeout: float) -> str:
    """Why no association was made: rejected (with the station's reason), or what the network said."""
    answer = assoc.acceptor.primitive
    if assoc.is_rejected and answer is not None:
        return f"association rejected by {address}: {answer.reason_str} ({answer.result_str}, {answer.source_str})"
    # pynetdicom only logs the socket's error; ask the network once what stands in the way.
    try:
        with socket.create_connection((address.host, address.port), timeout=min(timeout, 10.0)):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {address.host}:{address.port} (is the station's DICOM receiver running?)"
    except TimeoutError:
        return f"no answer from {address.host}:{address.port} within {min(timeout, 10.0):g} s"
    except OSError as exc:
        return f"cannot connect to {address.host}:{address.port}: {exc.strerror or exc}"
    return f"association with {address} aborted before it was established"
