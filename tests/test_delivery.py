"""Delivering the signed report back to the station: the DICOM objects, C-STORE to a real dcmtk ``storescp``
playing the station, retries by the injected clock, failure reasons, idempotence, and the station page."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from sqlalchemy import func, select, true
from sqlalchemy.orm import sessionmaker

from alliance import CT, ECG, Alliance
from conftest import make_config, tool
from pacs_node.node import storage_for
from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask, TaskEvent
from reading_queue.turnaround import Filters, figures
from reports import delivery, delivery_jobs
from reports.dicom_document import (
    BASIC_TEXT_SR_STORAGE, ENCAPSULATED_PDF_STORAGE, Evidence, basic_text_sr, encapsulated_pdf,
)
from reports.models import Report, ReportDelivery, ReportSignature
from telerad import events
from telerad.audit import AuditEvent
from telerad.config import Config
from telerad.events import OutboxEvent
from telerad.sites import Site
from telerad.users import User
from station_receiver import STATION_AE, Station
from web_client import row_of, text_of

SIGNED_AT = datetime(2026, 3, 4, 3, 30, 15, tzinfo=UTC)


def make_pdf(text: str = "Telerad test report") -> bytes:
    """A small, well-formed one-page PDF (cross-reference offsets right) of odd length, so the DICOM value is padded."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    if len(out) % 2 == 0:
        out += b"\n"
    return bytes(out)


PDF = make_pdf()


# --- the station: dcmtk's storescp, and a pynetdicom SCP that refuses ----------------------------------------------


@pytest.fixture
def config(tmp_path: Path, database_url: str, station_port: int) -> Config:
    """The demo alliance with Dongguan's receiver on a free port; Lijia (a village below Dongguan) has no return
    address of its own; Xihe and its village Zhaozhuang have none at all. Two retries, quickly given up."""
    base = make_config(tmp_path, database_url, TELERAD_DELIVERY_RETRY_MINUTES="[1, 5]", TELERAD_DELIVERY_TIMEOUT="5")
    sites = []
    for site in base.sites:
        if site.code == "TS-DONGGUAN":
            site = site.model_copy(update={"returns_to": site.returns_to.model_copy(update={"port": station_port})})
        elif site.code in ("VIL-LIJIA", "TS-XIHE", "VIL-ZHAOZHUANG"):
            site = site.model_copy(update={"returns_to": None})
        sites.append(site)
    return base.model_copy(update={"sites": tuple(sites)})


@pytest.fixture
def jobs(alliance: Alliance) -> delivery_jobs.Context:
    return delivery_jobs.configure(alliance.config, alliance.sessions)


# --- signing, as drafting and signing do it --------------------------------------------------------------------


def sign(alliance: Alliance, task: ReadingTask, pdf: bytes = PDF, signer: str = "reader-ct") -> OutboxEvent:
    """Store ``pdf`` as the signed PDF of a final report of the task's study and announce ``report.signed``."""
    stored = storage_for(alliance.config).put(pdf)
    now = alliance.now
    with alliance.sessions() as session, session.begin():
        user = session.scalar(select(User).where(User.name == signer))
        report = session.scalar(select(Report).where(Report.study_pk == task.study_pk))
        if report is None:
            report = Report(
                study_pk=task.study_pk, task_id=task.id, template_id="ct-chest", state="final", fields={},
                findings="双肺纹理清晰，未见明确实变影。", impression="胸部 CT 平扫未见明显异常。", critical=False,
                critical_category="", author_id=user.id, revision=1, created_at=now, updated_at=now, finalized_at=now,
            )
            session.add(report)
            session.flush()
            mark_signed(session, session.get(ReadingTask, task.id), user, now)
        signature = ReportSignature(
            report_id=report.id, role="author", signer_id=user.id, signed_at=now, canonical="{}", signature="",
            algorithm="test", certificate="", pdf_key=stored.key, pdf_sha256=stored.sha256,
        )
        session.add(signature)
        session.flush()
        event = events.publish(session, "report.signed", key=task.study_uid, report_id=report.id,
                               signature_id=signature.id, study_uid=task.study_uid)
        session.flush()
        session.expunge(event)
    return event


def handle(event: OutboxEvent) -> dict[str, int]:
    """The worker runs the event's handler (as ``events.dispatch`` would)."""
    return delivery_jobs.on_report_signed(event.id, event.topic, event.payload)


def deliveries(sessions: sessionmaker) -> list[ReportDelivery]:
    with sessions() as session:
        return list(session.scalars(select(ReportDelivery).order_by(ReportDelivery.id)))


def timeline(sessions: sessionmaker, task_id: int) -> list[TaskEvent]:
    with sessions() as session:
        return list(session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)))


# --- the DICOM objects -----------------------------------------------------------------------------------------


def test_the_encapsulated_pdf_joins_the_study_and_gives_back_exactly_the_signed_bytes(tmp_path: Path) -> None:
    source = dcmread(get_testdata_file("CT_small.dcm"))
    source.SpecificCharacterSet = "GB18030"
    source.PatientName = "张^三"
    original = tmp_path / "source.dcm"
    source.save_as(original)
    assert len(PDF) % 2 == 1

    ds = encapsulated_pdf(original, PDF, signed_at=SIGNED_AT, signer="影像医师 李强", series_number=9901,
                          instance_number=1, timezone=ZoneInfo("Asia/Shanghai"),
                          evidence=[Evidence(source.SeriesInstanceUID, source.SOPClassUID, source.SOPInstanceUID)])
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    back = dcmread(path)

    assert back.SOPClassUID == ENCAPSULATED_PDF_STORAGE == back.file_meta.MediaStorageSOPClassUID
    assert back.EncapsulatedDocumentLength == len(PDF) and len(back.EncapsulatedDocument) == len(PDF) + 1
    assert back.EncapsulatedDocument[: back.EncapsulatedDocumentLength] == PDF
    assert back.MIMETypeOfEncapsulatedDocument == "application/pdf" and back.BurnedInAnnotation == "YES"
    assert back.StudyInstanceUID == source.StudyInstanceUID and back.PatientID == source.PatientID
    assert back.SeriesInstanceUID not in (source.SeriesInstanceUID, back.StudyInstanceUID)
    assert back.Modality == "DOC" and back.SeriesDescription == "诊断报告" and back.SeriesNumber == 9901
    assert back.SpecificCharacterSet == "ISO_IR 192" and str(back.PatientName) == "张^三"  # GB18030 in, UTF-8 out
    concept = back.ConceptNameCodeSequence[0]
    assert (concept.CodeValue, concept.CodingSchemeDesignator) == ("18748-4", "LN")
    assert (back.ContentDate, back.ContentTime, back.TimezoneOffsetFromUTC) == ("20260304", "113015", "+0800")
    assert back.DocumentTitle == "影像诊断报告" and back.SourceInstanceSequence[0].ReferencedSOPInstanceUID
    dump = subprocess.run([tool("dcmdump"), "-E", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0 and "EncapsulatedDocumentLength" in dump.stdout, dump.stderr
    extracted = tmp_path / "extracted.pdf"
    subprocess.run([tool("dcm2pdf"), str(path), str(extracted)], check=True, capture_output=True)
    assert extracted.read_bytes() == PDF  # dcmtk too takes exactly Encapsulated Document Length bytes

    ecg = encapsulated_pdf(get_testdata_file("waveform_ecg.dcm"), PDF, signed_at=SIGNED_AT, signer="张敏",
                           series_number=9901, instance_number=2, language="en")
    assert ecg.ConceptNameCodeSequence[0].CodeValue == "11524-6" and ecg.DocumentTitle == "ECG report"
    assert ecg.SeriesDescription == "Report"
    with pytest.raises(ValueError, match="not a PDF"):
        encapsulated_pdf(original, b"GIF89a", signed_at=SIGNED_AT, signer="x", series_number=1, instance_number=1)


def test_the_basic_text_sr_is_a_verified_report_that_dcmtk_reads(tmp_path: Path) -> None:
    ds = basic_text_sr(get_testdata_file("waveform_ecg.dcm"), findings="窦性心律，心率 72 次/分。",
                       impression="正常心电图。", addenda=["补充：建议复查。"], signed_at=SIGNED_AT,
                       signer="心电医师 张敏", series_number=9902, instance_number=1)
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    back = dcmread(path)
    assert back.SOPClassUID == BASIC_TEXT_SR_STORAGE and back.Modality == "SR"
    assert (back.CompletionFlag, back.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert back.VerifyingObserverSequence[0].VerifyingObserverName == "心电医师 张敏"
    dump = subprocess.run([tool("dsrdump"), "+Pl", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "正常心电图。" in dump.stdout and "EKG study" in dump.stdout and "Addendum" in dump.stdout


# --- delivering ------------------------------------------------------------------------------------------------


def test_the_signed_report_reaches_the_station_byte_identical_and_on_the_timeline(
    alliance: Alliance, station: Station, jobs: delivery_jobs.Context, browser
) -> None:
    task = alliance.study(CT, "DG_CT", PatientName="Dong^Guan")
    station.start()
    event = sign(alliance, task)
    assert handle(event) == {"sent": 1, "pending": 0, "failed": 0}

    [sent] = deliveries(alliance.sessions)
    assert (sent.state, sent.channel, sent.attempts, sent.last_error) == ("sent", "dicom-pdf", 1, "")
    assert sent.target == f"{STATION_AE}@127.0.0.1:{station.port}" and sent.sent_at == alliance.now
    received = station.instance(sent.sop_instance_uid)
    with alliance.sessions() as session:
        signature = session.get(ReportSignature, sent.signature_id)
    stored = storage_for(alliance.config).read(signature.pdf_key)
    assert received.EncapsulatedDocumentLength == len(PDF)
    assert received.EncapsulatedDocument[: received.EncapsulatedDocumentLength] == stored == PDF
    assert hashlib.sha256(received.EncapsulatedDocument[: len(PDF)]).hexdigest() == signature.pdf_sha256
    assert received.StudyInstanceUID == task.study_uid and received.Modality == "DOC"
    assert received.ContentCreatorName == "影像医师 李强"
    assert {item.ReferencedSOPInstanceUID for item in received.SourceInstanceSequence}  # the CT it was read from

    kinds = [event.kind for event in timeline(alliance.sessions, task.id)]
    assert kinds[-2:] == ["signed", "report_delivered"]
    with alliance.sessions() as session:
        audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "report.delivery_attempted")).all()
    assert [(entry.object_id, entry.detail["outcome"]) for entry in audited] == [(str(sent.id), "sent")]

    page = browser("dongguan").get("/station", lang="en")
    row = row_of(page, "study-1")
    assert "Delivered" in row and f"sent to {STATION_AE} at" in text_of(page)
    assert f'href="/station/reports/{task.study_uid}.pdf"' in row


def test_a_station_that_is_down_is_tried_again_until_its_report_arrives(
    alliance: Alliance, station: Station, jobs: delivery_jobs.Context, browser
) -> None:
    task = alliance.study(CT, "DG_CT")
    signed_at = alliance.now
    assert handle(sign(alliance, task)) == {"sent": 0, "pending": 1, "failed": 0}
    [waiting] = deliveries(alliance.sessions)
    assert (waiting.state, waiting.attempts) == ("pending", 1)
    assert waiting.last_error.startswith(f"connection refused by 127.0.0.1:{station.port}")
    assert waiting.next_attempt_at == signed_at + timedelta(minutes=1)
    page = text_of(browser("dongguan").get("/station", lang="en"))
    assert "not sent yet (the station's DICOM receiver is not running); trying again at" in page
    assert "connection refused" in page

    alliance.advance(seconds=30)
    assert delivery_jobs.retry_sweep() == {"sent": 0, "pending": 0, "failed": 0}  # not due yet

    station.start()
    alliance.advance(seconds=31)
    assert delivery_jobs.retry_sweep() == {"sent": 1, "pending": 0, "failed": 0}
    [sent] = deliveries(alliance.sessions)
    assert (sent.state, sent.attempts, sent.next_attempt_at, sent.sent_at) == ("sent", 2, None, alliance.now)
    assert station.instance(sent.sop_instance_uid).EncapsulatedDocument[: len(PDF)] == PDF
    assert delivery_jobs.retry_sweep() == {"sent": 0, "pending": 0, "failed": 0}
    delivered = [e for e in timeline(alliance.sessions, task.id) if e.kind == "report_delivered"]
    assert len(delivered) == 1 and delivered[0].at - signed_at == timedelta(seconds=61)  # turnaround to delivery
    with alliance.sessions() as session:
        opened_at = session.get(ReadingTask, task.id).opened_at
        delivery_figures = figures(session, Filters(), true(), alliance.now)["delivered"]
    expected = round((delivered[0].at - opened_at).total_seconds() / 60, 2)
    assert delivery_figures == {"count": 1, "median_minutes": expected, "p90_minutes": expected}


def test_after_the_last_retry_the_delivery_fails_with_the_reason(
    alliance: Alliance, jobs: delivery_jobs.Context, browser
) -> None:
    task = alliance.study(CT, "DG_CT")
    handle(sign(alliance, task))
    for minutes in (1, 5):  # delivery.retry_minutes of the test configuration
        alliance.advance(minutes=minutes)
        assert delivery_jobs.retry_sweep()["pending" if minutes == 1 else "failed"] == 1
    [failed] = deliveries(alliance.sessions)
    assert (failed.state, failed.attempts, failed.next_attempt_at) == ("failed", 3, None)
    assert "connection refused" in failed.last_error
    alliance.advance(hours=1)
    assert delivery_jobs.retry_sweep() == {"sent": 0, "pending": 0, "failed": 0}
    last = timeline(alliance.sessions, task.id)[-1]
    assert last.kind == "report_delivery_failed" and "connection refused" in last.detail["error"]
    with alliance.sessions() as session:
        attempts = session.scalar(select(func.count()).where(AuditEvent.action == "report.delivery_attempted"))
    assert attempts == 3
    page = text_of(browser("dongguan").get("/station", lang="zh"))
    assert "发送失败：本站的 DICOM 接收程序未运行" in page


def test_a_repeated_event_makes_no_second_delivery(
    alliance: Alliance, station: Station, jobs: delivery_jobs.Context
) -> None:
    task = alliance.study(ECG, "DG_CT")
    station.start()
    event = sign(alliance, task)
    handle(event)
    assert handle(event) == {"sent": 0, "pending": 0, "failed": 0}
    assert len(deliveries(alliance.sessions)) == 1 and len(station.received()) == 1
    [sent] = deliveries(alliance.sessions)
    assert station.instance(sent.sop_instance_uid).ConceptNameCodeSequence[0].CodeValue == "11524-6"  # EKG study

    addendum = sign(alliance, task, make_pdf("Addendum"))  # a new signature is a new delivery, the next instance
    handle(addendum)
    rows = deliveries(alliance.sessions)
    assert [row.state for row in rows] == ["sent", "sent"] and len(station.received()) == 2
    first, second = (station.instance(row.sop_instance_uid) for row in rows)
    assert first.SeriesInstanceUID == second.SeriesInstanceUID and (first.InstanceNumber, second.InstanceNumber) == (1, 2)


def test_a_village_without_its_own_address_gets_its_report_through_its_township(
    alliance: Alliance, station: Station, jobs: delivery_jobs.Context
) -> None:
    task = alliance.study(ECG, "LIJIA_ECG")
    station.start()
    handle(sign(alliance, task, signer="reader-ecg"))
    [sent] = deliveries(alliance.sessions)
    assert sent.state == "sent" and sent.target.startswith(f"{STATION_AE}@")


def test_a_site_without_any_return_address_fails_at_once_with_the_reason(
    alliance: Alliance, jobs: delivery_jobs.Context
) -> None:
    task = alliance.study(ECG, "ZZ_ECG")
    assert handle(sign(alliance, task, signer="reader-ecg")) == {"sent": 0, "pending": 0, "failed": 0}
    [failed] = deliveries(alliance.sessions)
    assert (failed.state, failed.attempts, failed.next_attempt_at) == ("failed", 0, None)
    assert failed.last_error == "no return address configured for site VIL-ZHAOZHUANG"
    assert timeline(alliance.sessions, task.id)[-1].kind == "report_delivery_failed"


def test_a_refusing_station_is_told_apart_from_a_rejected_association(
    alliance: Alliance, station_port: int, jobs: delivery_jobs.Context
) -> None:
    def refuse(event: Any) -> Dataset:
        status = Dataset()
        status.Status, status.ErrorComment = 0xA700, "disk full"
        return status

    scp = AE(ae_title=STATION_AE)
    scp.require_called_aet = True
    scp.add_supported_context(ENCAPSULATED_PDF_STORAGE, ALL_TRANSFER_SYNTAXES)
    server = scp.start_server(("127.0.0.1", station_port), block=False, evt_handlers=[(evt.EVT_C_STORE, refuse)])
    try:
        handle(sign(alliance, alliance.study(CT, "DG_CT")))
        [refused] = deliveries(alliance.sessions)
        assert refused.state == "pending"
        assert refused.last_error == "status 0xA700 Refused: Out of Resources: disk full"

        with alliance.sessions() as session, session.begin():  # the station's AE title is changed by an administrator
            session.scalar(select(Site).where(Site.code == "TS-DONGGUAN")).return_ae_title = "DG_NEW"
        alliance.advance(minutes=1)
        assert delivery_jobs.retry_sweep()["pending"] == 1
        [rejected] = deliveries(alliance.sessions)
        assert rejected.target == f"DG_NEW@127.0.0.1:{station_port}"
        assert rejected.last_error.startswith(f"association rejected by DG_NEW@127.0.0.1:{station_port}: "
                                              "Called AE title not recognised")
    finally:
        server.shutdown()


def test_a_pdf_changed_in_storage_is_not_sent(
    alliance: Alliance, station: Station, jobs: delivery_jobs.Context
) -> None:
    task = alliance.study(CT, "DG_CT")
    station.start()
    event = sign(alliance, task)
    with alliance.sessions() as session:
        key = session.get(ReportSignature, event.payload["signature_id"]).pdf_key
    path = storage_for(alliance.config).path(key)
    path.chmod(0o640)
    path.write_bytes(PDF.replace(b"Telerad", b"Tampers"))
    handle(event)
    [held] = deliveries(alliance.sessions)
    assert held.state == "pending" and "does not match the SHA-256 recorded at signing" in held.last_error
    assert station.received() == []


def test_the_text_sr_goes_beside_the_pdf_when_configured(
    alliance: Alliance, station: Station, tmp_path: Path
) -> None:
    delivery_jobs.configure(
        alliance.config.model_copy(
            update={"delivery": alliance.config.delivery.model_copy(update={"send_text_sr": True})}
        ),
        alliance.sessions,
    )
    task = alliance.study(CT, "DG_CT")
    station.start()
    assert handle(sign(alliance, task)) == {"sent": 2, "pending": 0, "failed": 0}
    pdf, sr = deliveries(alliance.sessions)
    assert (pdf.channel, sr.channel) == ("dicom-pdf", "dicom-sr")
    text = station.instance(sr.sop_instance_uid)
    assert text.SOPClassUID == BASIC_TEXT_SR_STORAGE and text.StudyInstanceUID == task.study_uid
    copy = tmp_path / "sr.dcm"
    text.save_as(copy)
    dump = subprocess.run([tool("dsrdump"), "+Pl", str(copy)], capture_output=True, text=True)
    assert dump.returncode == 0 and "胸部 CT 平扫未见明显异常。" in dump.stdout


def test_the_webhook_gets_the_fhir_diagnostic_report_when_configured(alliance: Alliance) -> None:
    received: list[tuple[str, dict[str, Any]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/fhir"
    config = alliance.config.model_copy(
        update={"delivery": alliance.config.delivery.model_copy(update={"webhook_url": url})}
    )
    delivery_jobs.configure(config, alliance.sessions)
    try:
        handle(sign(alliance, alliance.study(CT, "DG_CT")))
    finally:
        server.shutdown()
    channels = {row.channel: row for row in deliveries(alliance.sessions)}
    assert channels["webhook"].state == "sent" and channels["webhook"].target == url
    [(content_type, resource)] = received
    assert content_type.startswith("application/fhir+json") and resource["resourceType"] == "DiagnosticReport"


def test_the_event_reaches_the_handler_once_subscribed(
    alliance: Alliance, jobs: delivery_jobs.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "_handlers", {})
    event = sign(alliance, alliance.study(ECG, "ZZ_ECG"), signer="reader-ecg")
    assert events.dispatch(event.id, event.topic, event.payload) == 0
    delivery_jobs.subscribe()
    delivery_jobs.subscribe()
    assert events.dispatch(event.id, event.topic, event.payload) == 1
    assert [row.state for row in deliveries(alliance.sessions)] == ["failed"]


# --- the station page ------------------------------------------------------------------------------------------


def test_the_station_opens_its_signed_pdf_and_no_other_station_can(
    alliance: Alliance, jobs: delivery_jobs.Context, browser, sessions: sessionmaker
) -> None:
    task = alliance.study(CT, "DG_CT", PatientName="Dong^Guan")
    url = f"/station/reports/{task.study_uid}.pdf"
    dongguan = browser("dongguan")
    assert dongguan.get(url).status_code == 404  # no report yet
    row = row_of(dongguan.get("/station", lang="en"), "study-1")
    assert "View report / Print" in row and 'aria-disabled="true"' in row and url not in row

    handle(sign(alliance, task))  # the station's receiver is down: the delivery waits, the page link works
    row = row_of(dongguan.get("/station", lang="zh"), "study-1")
    assert f'href="{url}"' in row and "查看报告" in row and "打印" in row and "data-state=\"pending\"" in row
    answer = dongguan.get(url)
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    assert answer.get_data() == PDF and answer.headers["Content-Disposition"].startswith("inline")
    assert "no-store" in answer.headers["Cache-Control"]

    for other in ("xihe", "lijia", "zhaozhuang"):  # another township, a village below Dongguan, another village
        assert browser(other).get(url).status_code == 404
    assert browser("supervisor").get(url).status_code == 200
    assert browser("dongguan").get("/station/reports/1.2.3.4.pdf").status_code == 404
    with sessions() as session:
        viewers = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "report.viewed", AuditEvent.object_id == task.study_uid)
        ).all()
    assert sorted(viewers) == ["dongguan", "supervisor"]


def test_a_preliminary_report_is_not_shown_to_the_station(
    alliance: Alliance, jobs: delivery_jobs.Context, browser
) -> None:
    task = alliance.study(CT, "DG_CT")
    sign(alliance, task)
    with alliance.sessions() as session, session.begin():
        session.scalar(select(Report).where(Report.study_pk == task.study_pk)).state = "preliminary"
    dongguan = browser("dongguan")
    assert dongguan.get(f"/station/reports/{task.study_uid}.pdf").status_code == 404
    row = row_of(dongguan.get("/station", lang="en"), "study-1")
    assert "Report signed" in row and "/station/reports/" not in row


def test_the_retry_schedule_is_configuration(tmp_path: Path, database_url: str) -> None:
    config = make_config(tmp_path, database_url, TELERAD_DELIVERY_RETRY_MINUTES="[2, 10, 30]",
                         TELERAD_DELIVERY_SEND_TEXT_SR="true")
    assert config.delivery.retry_minutes == (2, 10, 30) and config.delivery.send_text_sr
    assert delivery.channels(config) == ["dicom-pdf", "dicom-sr"]
    with pytest.raises(Exception, match="delivery.retry_minutes"):
        make_config(tmp_path, database_url, TELERAD_DELIVERY_RETRY_MINUTES="[0]")
