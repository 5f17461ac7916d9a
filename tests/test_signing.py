"""Signing reports: readers' keys, the canonical form and its detached signature, the signed PDF (checked with
pyHanko and poppler's ``pdfsig``), tampering named field by field, ``telerad report verify``, keys from a PKCS#12
file issued by a hospital's CA."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import func, select, text
from sqlalchemy.orm import sessionmaker

from conftest import ROOT, tool
from dicom_files import copy_with_new_uids
from pacs_node.archive import Archive
from pacs_node.index import Study
from pacs_node.node import load_senders, storage_for
from reports import keys, pdf, signing
from reports.canonical import canonical_bytes
from reports.models import Report, ReportAddendum, ReportSignature, SigningKey
from telerad import clock
from telerad.audit import AuditEvent
from telerad.cli import main
from telerad.config import Config
from telerad.provisioning import demo_ca, prepare
from telerad.users import User, hash_password

NOW = datetime(2026, 3, 4, 3, 30, 15, 250000, tzinfo=UTC)
CT = Path(get_testdata_file("CT_small.dcm"))
ECG = Path(get_testdata_file("waveform_ecg.dcm"))
IMPRESSION = "右肺上叶磨玻璃结节，建议3个月后复查。"


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    moment = [NOW]
    clock.set_source(lambda: moment[0])
    yield moment
    clock.set_source(None)


@pytest.fixture
def passwords(config: Config) -> dict[str, str]:
    lines = (config.data_dir / "demo-passwords.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t") for line in lines)


class Desk:
    """Studies sent by stations through the archive, reports written straight into the table, signatures."""

    def __init__(self, config: Config, sessions: sessionmaker, folder: Path, passwords: dict[str, str]) -> None:
        self.config, self.sessions, self.folder, self.passwords = config, sessions, folder, passwords
        self.storage = storage_for(config)
        self.archive = Archive(self.storage, sessions)
        self.senders = load_senders(sessions)

    def receive(self, source: Path, ae_title: str) -> str:
        path = copy_with_new_uids(source, self.folder)
        self.archive.receive(path.read_bytes(), self.senders[ae_title])
        return dcmread(path, stop_before_pixels=True).StudyInstanceUID

    def report(self, study_uid: str, author: str, **content: Any) -> int:
        with self.sessions() as session, session.begin():
            study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
            report = Report(
                study_pk=study.id, template_id=content.pop("template_id", "ct-chest"), state="draft",
                fields=content.pop("fields", {}), findings=content.pop("findings", ""),
                impression=content.pop("impression", IMPRESSION), critical=content.pop("critical", False),
                critical_category=content.pop("critical_category", ""), author_id=self.user(session, author).id,
                created_at=clock.now(), updated_at=clock.now(),
            )
            session.add(report)
            session.flush()
            return report.id

    def sign(self, report_id: int, who: str, password: str | None = None, **options: Any) -> ReportSignature:
        with self.sessions() as session, session.begin():
            return signing.sign(
                session, self.config, self.storage, session.get_one(Report, report_id), self.user(session, who),
                self.passwords[who] if password is None else password, role=options.pop("role", "author"),
                at=options.pop("at", clock.now()), **options,
            )

    def verify(self, study_uid: str) -> list[signing.Verification]:
        with self.sessions() as session:
            return signing.verify_study(session, self.config, study_uid)

    def execute(self, statement: str, **values: Any) -> None:
        with self.sessions() as session, session.begin():
            session.execute(text(statement), values)

    @staticmethod
    def user(session: Any, name: str) -> User:
        return session.scalars(select(User).where(User.name == name)).one()


@pytest.fixture
def desk(config: Config, sessions: sessionmaker, tmp_path: Path, passwords: dict[str, str], now: list[datetime]) -> Desk:
    return Desk(config, sessions, tmp_path / "files", passwords)


def pdfsig(path: Path, *extra: str) -> str:
    return subprocess.run([tool("pdfsig"), *extra, str(path)], capture_output=True, text=True, timeout=60).stdout


def pdf_text(data: bytes, folder: Path) -> str:
    path = folder / "report.pdf"
    path.write_bytes(data)
    return subprocess.run([tool("pdftotext"), "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True).stdout


def test_an_ecg_report_is_signed_with_a_detached_signature_and_a_pdf_signature(desk: Desk, tmp_path: Path) -> None:
    study_uid = desk.receive(ECG, "LIJIA_ECG")
    report_id = desk.report(
        study_uid, "reader-ecg", template_id="ecg-12lead", impression="窦性心律，正常心电图。",
        fields={"rhythm": "窦性心律 sinus rhythm", "rate": 72, "qtc": 412.5}, findings="各导联波形未见明显异常。",
    )
    signature = desk.sign(report_id, "reader-ecg")

    document = json.loads(signature.canonical)
    assert canonical_bytes(document) == signature.canonical.encode()  # the stored text is the canonical form
    assert document["impression"] == "窦性心律，正常心电图。" and document["fields"]["rhythm"] == "窦性心律 sinus rhythm"
    assert document["study"]["uid"] == study_uid and document["station"]["code"] == "VIL-LIJIA"
    assert document["signer"] == {"name": "reader-ecg", "display_name": "心电医师 张敏", "role": "author",
                                  "fingerprint": document["signer"]["fingerprint"]}
    assert document["signed_at"] == "2026-03-04T03:30:15.250000Z" and signature.signed_at == NOW
    assert signature.algorithm == "cms-rsa-sha256"
    [result] = desk.verify(study_uid)
    assert result.ok, result.lines()

    with desk.sessions() as session:
        key = session.scalars(select(SigningKey)).one()
        assert key.private_key.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert key.fingerprint == document["signer"]["fingerprint"]
        actions = set(session.scalars(select(AuditEvent.action)))
        assert {"signing_key.created", "report.signed"} <= actions

    signed_pdf = desk.storage.read(signature.pdf_key)
    assert signature.pdf_sha256 == signature.pdf_key.split("/")[-1].split(".")[0]
    certificate = x509.load_pem_x509_certificate(signature.certificate.encode())
    demo = x509.load_pem_x509_certificate(demo_ca(desk.config)[0].read_bytes())
    assert certificate.issuer == demo.subject
    assert pdf.validate_pdf(signed_pdf, trust_roots=[demo], moment=NOW, certificate=certificate) == []
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed_pdf)
    checked = pdfsig(path)
    assert "Signature is Valid." in checked and "Total document signed" in checked, checked
    words = pdf_text(signed_pdf, tmp_path)
    assert "窦性心律，正常心电图。" in words and "李家村卫生室" in words and "心电医师 张敏" in words, words

    again = desk.sign(report_id, "senior-ecg", role="countersign")
    assert json.loads(again.canonical)["signer"]["role"] == "countersign"
    assert all(result.ok for result in desk.verify(study_uid))


def test_a_wrong_password_signs_nothing(desk: Desk) -> None:
    study_uid = desk.receive(CT, "DG_CT")
    report_id = desk.report(study_uid, "reader-ct")
    with pytest.raises(keys.WrongPassword, match="wrong password for reader-ct"):
        desk.sign(report_id, "reader-ct", password="not-my-password")
    with desk.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ReportSignature)) == 0
        assert session.scalar(select(func.count()).select_from(SigningKey)) == 0
        assert session.scalar(select(func.count()).where(AuditEvent.action == "report.sign_failed")) == 0  # rolled back
    with desk.sessions() as session:
        report = session.get_one(Report, report_id)
        with pytest.raises(keys.WrongPassword):
            signing.sign(session, desk.config, desk.storage, report, desk.user(session, "reader-ct"), "nope",
                         role="author", at=NOW)
        session.commit()  # the caller keeps the record of the failed attempt
    with desk.sessions() as session:
        failed = session.scalars(select(AuditEvent).where(AuditEvent.action == "report.sign_failed")).one()
        assert failed.actor == "reader-ct" and failed.detail["reason"] == "wrong password"


def test_a_record_changed_after_signature_is_named(desk: Desk, tmp_path: Path) -> None:
    study_uid = desk.receive(CT, "DG_CT")
    report_id = desk.report(study_uid, "reader-ct", fields={"nodule": "右肺上叶", "size_mm": 8}, critical=True,
                            critical_category="pulmonary_embolism")
    signature = desk.sign(report_id, "reader-ct")
    signed_pdf = desk.storage.read(signature.pdf_key)
    words = pdf_text(signed_pdf, tmp_path)
    assert IMPRESSION in words and "东关镇卫生院" in words and "肺栓塞 Pulmonary embolism" in words, words

    desk.execute("UPDATE reports SET impression = :value WHERE id = :id", value="未见异常。", id=report_id)
    [result] = desk.verify(study_uid)
    assert not result.ok and not result.problems
    assert [str(change) for change in result.changes] == [f'impression: signed "{IMPRESSION}", now "未见异常。"']
    desk.execute("UPDATE reports SET impression = :value WHERE id = :id", value=IMPRESSION, id=report_id)
    assert desk.verify(study_uid)[0].ok

    desk.execute("UPDATE reports SET fields = :value WHERE id = :id", value='{"nodule": "右肺上叶", "size_mm": 18}',
                 id=report_id)
    desk.execute("UPDATE patients SET name = 'Somebody^Else' WHERE id = (SELECT patient_pk FROM studies WHERE id = "
                 "(SELECT study_pk FROM reports WHERE id = :id))", id=report_id)
    [result] = desk.verify(study_uid)
    assert [change.path for change in result.changes] == ["fields.size_mm", "patient.name"]
    assert result.changes[1].now == "Somebody^Else"

    pdf_file = desk.storage.path(signature.pdf_key)
    pdf_file.write_bytes(signed_pdf.replace(b"/Creator (Telerad)", b"/Creator (Telerax)", 1))
    desk.execute("UPDATE report_signatures SET pdf_sha256 = :value WHERE id = :id", value="0" * 64, id=signature.id)
    [result] = desk.verify(study_uid)
    assert "pdf_sha256" in [change.path for change in result.changes]
    assert "pdf: the stored PDF's SHA-256 differs from the one recorded at signature" in result.problems
    assert "pdf: the PDF was changed after signature (its digest differs)" in result.problems

    desk.execute("UPDATE report_signatures SET canonical = replace(canonical, :old, :new) WHERE id = :id",
                 old=IMPRESSION, new="未见异常。", id=signature.id)
    [result] = desk.verify(study_uid)
    assert "signature: the stored canonical text does not match its signature (digest differs)" in result.problems


def test_report_verify_on_the_command_line(desk: Desk, config: Config) -> None:
    study_uid = desk.receive(CT, "DG_CT")
    desk.sign(desk.report(study_uid, "reader-ct"), "reader-ct")
    environment = {"TELERAD_SERVICE_DATA_DIR": str(config.data_dir), "TELERAD_DATABASE_URL": config.database_url}

    def run(*arguments: str) -> Any:
        return CliRunner().invoke(main, ["--config", str(ROOT / "config.yaml"), "report", "verify", *arguments],
                                  env=environment)

    result = run("--study", study_uid)
    assert result.exit_code == 0, result.output
    assert f"OK   study {study_uid} signature" in result.output and "1 signature(s) checked, 0 failed" in result.output
    desk.execute("UPDATE reports SET impression = '正常' WHERE study_pk = (SELECT id FROM studies WHERE study_uid = :uid)",
                 uid=study_uid)
    result = run("--all")
    assert result.exit_code == 1
    assert f"FAIL study {study_uid}" in result.output
    assert f'changed since signature: impression: signed "{IMPRESSION}", now "正常"' in result.output
    assert run("--study", "1.2.3.4").exit_code == 1 and "no study 1.2.3.4" in run("--study", "1.2.3.4").output
    assert run().exit_code == 2


def _certificate(subject: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
                 ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30)).not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=issuer is not None, content_commitment=issuer is not None, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=issuer is None, crl_sign=issuer is None,
            encipher_only=False, decipher_only=False,
        ), critical=True)
    )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def test_a_key_from_the_hospitals_ca_is_imported_and_used(
    desk: Desk, config: Config, sessions: sessionmaker, tmp_path: Path
) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hospital_ca = _certificate("县人民医院 CA", ca_key, None)
    ca_file = tmp_path / "hospital-ca.pem"
    ca_file.write_bytes(hospital_ca.public_bytes(serialization.Encoding.PEM))
    desk.config = config.model_copy(update={"signing": config.signing.model_copy(update={"ca_certificate": ca_file})})
    reader_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = _certificate("影像医师 李强", reader_key, (hospital_ca, ca_key))
    bundle = pkcs12.serialize_key_and_certificates(
        b"reader-ct", reader_key, issued, [hospital_ca], serialization.BestAvailableEncryption(b"p12-secret")
    )
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = _certificate("Somebody's CA", stranger_key, None)
    foreign = pkcs12.serialize_key_and_certificates(
        b"x", reader_key, _certificate("影像医师 李强", reader_key, (stranger, stranger_key)), None,
        serialization.BestAvailableEncryption(b"p12-secret"),
    )

    with sessions() as session, session.begin():
        reader = desk.user(session, "reader-ct")
        with pytest.raises(keys.SigningKeyError, match="not issued by a trusted CA"):
            keys.import_pkcs12(session, desk.config, reader, foreign, "p12-secret", desk.passwords["reader-ct"])
        with pytest.raises(keys.SigningKeyError, match="password is wrong"):
            keys.import_pkcs12(session, desk.config, reader, bundle, "wrong", desk.passwords["reader-ct"])
        imported = keys.import_pkcs12(session, desk.config, reader, bundle, "p12-secret", desk.passwords["reader-ct"])
        assert imported.fingerprint == keys.fingerprint(issued)

    study_uid = desk.receive(CT, "DG_CT")
    signature = desk.sign(desk.report(study_uid, "reader-ct"), "reader-ct")
    assert json.loads(signature.canonical)["signer"]["fingerprint"] == keys.fingerprint(issued)
    [result] = desk.verify(study_uid)
    assert result.ok, result.lines()
    signed_pdf = desk.storage.read(signature.pdf_key)
    assert pdf.validate_pdf(signed_pdf, trust_roots=[hospital_ca], moment=NOW, certificate=issued) == []
    assert pdf.validate_pdf(signed_pdf, trust_roots=[stranger], moment=NOW, certificate=issued) != []

    desk.config = config  # the hospital's CA no longer trusted: the signature's certificate is named
    [result] = desk.verify(study_uid)
    assert any(problem.startswith("certificate: not issued by a trusted CA") for problem in result.problems)


def test_a_changed_password_gets_a_new_key_and_old_signatures_stay_valid(desk: Desk, now: list[datetime]) -> None:
    study_uid = desk.receive(CT, "DG_CT")
    report_id = desk.report(study_uid, "reader-ct")
    first = desk.sign(report_id, "reader-ct")
    with desk.sessions() as session, session.begin():
        desk.user(session, "reader-ct").password_hash = hash_password("a-new-password")
    now[0] += timedelta(hours=1)
    with desk.sessions() as session, session.begin():
        addendum = ReportAddendum(report_id=report_id, text="补充：左肺下叶小钙化灶。",
                                  author_id=desk.user(session, "reader-ct").id, created_at=now[0], signed_at=now[0])
        session.add(addendum)
        session.flush()
        addendum_id = addendum.id
    with desk.sessions() as session, session.begin():
        second = signing.sign(
            session, desk.config, desk.storage, session.get_one(Report, report_id), desk.user(session, "reader-ct"),
            "a-new-password", role="author", addendum=session.get_one(ReportAddendum, addendum_id), at=now[0],
        )
    assert first.certificate != second.certificate
    assert json.loads(second.canonical)["addendum"]["text"] == "补充：左肺下叶小钙化灶。"
    assert json.loads(first.canonical)["addenda"] == []
    with desk.sessions() as session:
        rows = session.scalars(select(SigningKey).order_by(SigningKey.id)).all()
        assert [row.revoked_at is not None for row in rows] == [True, False]
    assert [result.ok for result in desk.verify(study_uid)] == [True, True]


def test_demo_ca_is_made_once_per_data_directory(config: Config, sessions: sessionmaker) -> None:
    certificate, key = demo_ca(config)
    assert key.stat().st_mode & 0o777 == 0o600
    before = certificate.read_bytes()
    prepare(config, sessions)
    assert certificate.read_bytes() == before
    assert x509.load_pem_x509_certificate(before).extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_hospitals_ca_issues_readers_certificates_when_its_key_is_configured(
    desk: Desk, config: Config, sessions: sessionmaker, tmp_path: Path
) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hospital_ca = _certificate("县人民医院 CA", ca_key, None)
    (tmp_path / "ca.pem").write_bytes(hospital_ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca-key.pem").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"ca")
    ))
    signing_section = config.signing.model_copy(update={
        "ca_certificate": tmp_path / "ca.pem", "ca_key": tmp_path / "ca-key.pem", "ca_key_password": "ca",
        "demo_ca": False,
    })
    hospital = config.model_copy(update={"signing": signing_section})
    with sessions() as session, session.begin():
        signer = keys.signer_for(session, hospital, desk.user(session, "reader-ecg"), desk.passwords["reader-ecg"])
    assert signer.certificate.issuer == hospital_ca.subject and signer.chain == (hospital_ca,)
    assert keys.certificate_problem(signer.certificate, [], keys.trust_roots(hospital), NOW) is None
    assert "not issued by a trusted CA" in keys.certificate_problem(signer.certificate, [], keys.trust_roots(config), NOW)

    broken = config.model_copy(update={"signing": signing_section.model_copy(update={"ca_key_password": "wrong"})})
    with sessions() as session, session.begin(), pytest.raises(keys.SigningKeyError, match="signing.ca_key: cannot"):
        keys.signer_for(session, broken, desk.user(session, "reader-ct"), desk.passwords["reader-ct"])
