"""End to end, as issue 5 asks: a real CT and a real 12-lead ECG are sent with dcmtk's ``storescu`` from station AE
titles to the node; readers claim, write and sign through the JSON API; the ``report.signed`` event reaches the
delivery handler (through ``events.dispatch``, as the worker runs it); dcmtk's ``storescp`` playing the station
receives the Encapsulated PDF; the PDF taken from it (Encapsulated Document Length bytes) is byte-identical to the
signed PDF in the storage area and its PDF signature validates with pyHanko; ``telerad report verify`` passes, and
fails naming the field once the stored report is changed in the database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydicom import dcmread
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select, update

from alliance import Alliance
from conftest import ROOT, make_config
from dicom_files import copy_with_new_uids, series_from, storescu
from pacs_node.index import Study
from pacs_node.node import Receiver, storage_for
from reports import delivery_jobs, keys
from reports.keys import run_coroutine
from reports.models import Report, ReportDelivery, ReportSignature
from telerad import events
from telerad.cli import main
from telerad.config import Config
from telerad.events import OutboxEvent
from telerad.users import User
from station_receiver import STATION_AE, Station

pytestmark = pytest.mark.dcmtk

FINDINGS = {
    "CT": "胸廓对称，气管居中。双肺纹理清晰，未见明确实变影及结节。纵隔未见肿大淋巴结。",
    "ECG": "窦性心律，心率 72 次/分，PR 间期 160 ms，QRS 时限 90 ms，电轴正常。",
}
IMPRESSION = {"CT": "胸部 CT 平扫未见明显异常。", "ECG": "正常心电图。"}


@pytest.fixture
def config(tmp_path: Path, database_url: str, station_port: int) -> Config:
    """The demo alliance; Dongguan's and Xihe's report receivers are the one ``storescp`` on a free port."""
    base = make_config(tmp_path, database_url)
    sites = tuple(
        site.model_copy(update={"returns_to": site.returns_to.model_copy(update={"port": station_port})})
        if site.code in ("TS-DONGGUAN", "TS-XIHE") else site
        for site in base.sites
    )
    return base.model_copy(update={"sites": sites})


@pytest.fixture
def config_file(config: Config, database_url: str, tmp_path: Path) -> Path:
    """The same installation as a configuration file, for the command line."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["service"]["data_dir"] = str(config.data_dir)
    raw["database"]["url"] = database_url
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def verify(config_file: Path, study_uid: str):
    return CliRunner().invoke(main, ["--config", str(config_file), "report", "verify", "--study", study_uid])


def pyhanko_status(data: bytes, trust_roots: list[x509.Certificate]):
    """pyHanko's own verdict on the PDF's one signature (as a standard PDF reader checks it)."""
    [embedded] = PdfFileReader(io.BytesIO(data)).embedded_signatures
    roots = [asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)) for root in trust_roots]
    context = ValidationContext(trust_roots=roots, allow_fetching=False)
    return run_coroutine(async_validate_pdf_signature(embedded, signer_validation_context=context))


def test_a_real_ct_and_ecg_are_read_signed_and_delivered_back_byte_identical(
    alliance: Alliance, node: Receiver, data: Path, tmp_path: Path, passwords: dict[str, str], station: Station,
    config: Config, config_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = config.dicom.port
    ct = series_from(sorted((data / "ct" / "series_JANCT000_3slice").glob("*.dcm")), tmp_path / "ct", 3)
    ecg = [copy_with_new_uids(data / "ecg" / "mortara_12lead_anonymous_ecg.dcm", tmp_path / "ecg")]
    for ae_title, paths in (("DG_CT", ct), ("XH_ECG", ecg)):
        sent = storescu(port, ae_title, paths)
        assert sent.returncode == 0, sent.stderr
    studies = {
        "CT": dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID,
        "ECG": dcmread(ecg[0], stop_before_pixels=True).StudyInstanceUID,
    }
    station.start()
    monkeypatch.setattr(events, "_handlers", {})
    delivery_jobs.configure(config, alliance.sessions)
    delivery_jobs.subscribe()
    storage = storage_for(config)
    roots = keys.trust_roots(config)

    for modality, study_uid in studies.items():
        task = alliance.complete(study_uid)
        with alliance.sessions() as session:
            reader = session.get(User, task.assignee_id).name  # the county centre pushes work to its reader
        assert reader == {"CT": "reader-ct", "ECG": "reader-ecg"}[modality]
        assert alliance.post(f"/tasks/{task.id}/claim", reader).status_code == 200
        draft = alliance.client.put(
            f"/api/v1/studies/{study_uid}/report", headers=alliance._auth(reader),
            json={"revision": 0, "findings": FINDINGS[modality], "impression": IMPRESSION[modality]},
        )
        assert draft.status_code == 200, draft.json
        alliance.advance(minutes=7)
        signed = alliance.post(f"/studies/{study_uid}/report/sign", reader, {"password": passwords[reader]})
        assert signed.status_code == 200, signed.json
        assert signed.json["state"] == "final"

        with alliance.sessions() as session:
            [event] = [e for e in session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "report.signed"))
                       if e.payload["study_uid"] == study_uid]
        assert events.dispatch(event.id, event.topic, event.payload) == 1  # the worker's job for the event
        with alliance.sessions() as session:
            signature = session.get(ReportSignature, event.payload["signature_id"])
            [sent] = session.scalars(select(ReportDelivery).where(ReportDelivery.signature_id == signature.id)).all()
        assert (sent.state, sent.channel, sent.attempts) == ("sent", "dicom-pdf", 1), sent.last_error
        assert sent.target.startswith({"CT": STATION_AE, "ECG": "XH_REPORTS"}[modality] + "@")

        received = station.instance(sent.sop_instance_uid)
        assert received.StudyInstanceUID == study_uid and received.Modality == "DOC"
        assert received.ConceptNameCodeSequence[0].CodeValue == {"CT": "18748-4", "ECG": "11524-6"}[modality]
        extracted = received.EncapsulatedDocument[: received.EncapsulatedDocumentLength]
        assert extracted == storage.read(signature.pdf_key)  # byte-identical to the signed PDF
        certificate = x509.load_pem_x509_certificate(signature.certificate.encode())
        status = pyhanko_status(extracted, roots)
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
        assert status.coverage.name == "ENTIRE_FILE"
        assert status.signing_cert.dump() == certificate.public_bytes(Encoding.DER)  # the reader's own certificate

        passed = verify(config_file, study_uid)
        assert passed.exit_code == 0, passed.output
        assert "OK" in passed.output and "1 signature(s) checked, 0 failed" in passed.output

    with alliance.sessions() as session, session.begin():  # someone changes the signed CT report behind our back
        report = session.scalar(select(Report).join(Study, Study.id == Report.study_pk)
                                .where(Study.study_uid == studies["CT"]))
        session.execute(update(Report).where(Report.id == report.id).values(impression="胸部 CT 平扫见右肺结节。"))
    failed = verify(config_file, studies["CT"])
    assert failed.exit_code == 1, failed.output
    assert "FAIL" in failed.output and "changed since signature: impression:" in failed.output, failed.output
    assert verify(config_file, studies["ECG"]).exit_code == 0
