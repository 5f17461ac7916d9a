"""Reports benchmark: sign-and-render time of an ECG and a CT report, and delivery throughput to a station.

What is measured, in one process on a throw-away SQLite installation of the
demo alliance:

1. Sign and render (``reports.signing.sign``, what ``POST .../report/sign``
   does besides the state change): the password check (Argon2id), unlocking
   the reader's key, the canonical form and its detached CMS signature, the
   A4 PDF with the CJK font (subset) and the key images or the ECG rhythm
   strip, its PAdES signature, and the durable store of the signed PDF. A real
   CT (the GE 512×512 slices in ``shared/data``) and pydicom's real 12-lead ECG;
   the same report is signed ``--signatures`` times (median, and the first,
   which also makes the reader's key pair, apart).
2. Delivery throughput: every signature of the run becomes an Encapsulated PDF
   delivery to the station's DICOM receiver — dcmtk's ``storescp`` playing the
   stations, as in the tests — sent by ``reports.delivery.deliver_due`` (build
   the DICOM object, one association and C-STORE each, record the outcome).
   Printed as deliveries per second and MB/s of PDF, beside dcmtk's
   ``storescu`` sending the same received objects to a fresh ``storescp``, one
   association each (the peer).

Run from the repository root (needs dcmtk and the real data beside the checkout)::

    .venv/bin/python -m bench.reports [--signatures 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from bench.ingest import REPO, SOURCE_SERIES, data_folder, free_port, tool
from pacs_node.index import Study
from pacs_node.node import archive_for, load_senders, storage_for
from reports.delivery import create_deliveries, deliver_due
from reports.models import Report, ReportSignature
from reports.signing import sign
from telerad import clock
from telerad.config import Config, load_config
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare
from telerad.users import User

STATION_AE = "DG_REPORTS"


def make_config(work: Path, station_port: int) -> Config:
    """The demo configuration on a throw-away folder, every station's report receiver on ``station_port``."""
    config = load_config(REPO / "config.yaml", {
        "TELERAD_SERVICE_DATA_DIR": str(work / "var"),
        "TELERAD_DATABASE_URL": f"sqlite:///{work / 'telerad.db'}",
        "TELERAD_REDIS_URL": "",
        "TELERAD_SERVICE_LOAD_SAMPLES": "false",
    })
    sites = tuple(
        site.model_copy(update={"returns_to": site.returns_to.model_copy(update={"port": station_port})})
        if site.returns_to is not None else site
        for site in config.sites
    )
    return config.model_copy(update={"sites": sites})


def receive(config: Config, sessions: sessionmaker, paths: Sequence[Path], ae_title: str) -> str:
    """Store ``paths`` (one study) as sent by ``ae_title``; the study's UID."""
    archive = archive_for(config, sessions)
    sender = load_senders(sessions)[ae_title]
    for path in paths:
        archive.receive(path.read_bytes(), sender)
    return str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def draft(sessions: sessionmaker, study_uid: str, author: str, template_id: str, impression: str) -> int:
    """A draft report written by ``author`` (inserted directly: the benchmark measures signing)."""
    now = clock.now()
    with sessions() as session, session.begin():
        study = session.scalar(select(Study).where(Study.study_uid == study_uid))
        user = session.scalar(select(User).where(User.name == author))
        report = Report(
            study_pk=study.id, template_id=template_id, fields={}, findings="见图像。", impression=impression,
            author_id=user.id, created_at=now, updated_at=now,
        )
        session.add(report)
        session.flush()
        return report.id


def sign_many(config: Config, sessions: sessionmaker, report_id: int, author: str, password: str,
              count: int) -> tuple[float, list[float], list[int]]:
    """Sign the report ``count`` times: seconds of the first (which makes the key pair), of the rest, signature ids."""
    storage = storage_for(config)
    times, ids = [], []
    for _ in range(count):
        with sessions() as session, session.begin():
            report = session.get(Report, report_id)
            user = session.scalar(select(User).where(User.name == author))
            start = time.perf_counter()
            signature = sign(session, config, storage, report, user, password, role="author", at=clock.now())
            session.flush()
            times.append(time.perf_counter() - start)
            ids.append(signature.id)
    return times[0], times[1:], ids


def station_receiver(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """dcmtk's storescp as the stations' receiver (it answers any called AE title), echoing before this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [tool("storescp"), "-aet", STATION_AE, "-od", str(folder), "+B", "-uf", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ae = AE(ae_title="BENCH")
    ae.add_requested_context("1.2.840.10008.1.1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assoc = ae.associate("127.0.0.1", port, ae_title=STATION_AE)
        if assoc.is_established:
            assoc.release()
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit("storescp did not start")


def deliver_all(config: Config, sessions: sessionmaker, signature_ids: Sequence[int]) -> tuple[int, float, int]:
    """Deliveries made for ``signature_ids`` and sent: how many were sent, the seconds it took, PDF bytes sent."""
    at = clock.now()
    with sessions() as session, session.begin():
        for signature_id in signature_ids:
            create_deliveries(session, config, signature_id, at)
        pdf_bytes = 0
        for signature in session.scalars(select(ReportSignature).where(ReportSignature.id.in_(signature_ids))):
            pdf_bytes += storage_for(config).path(signature.pdf_key).stat().st_size
    start = time.perf_counter()
    counts = deliver_due(sessions, config, storage_for(config), at)
    return counts["sent"], time.perf_counter() - start, pdf_bytes


def storescu_each(port: int, files: Sequence[Path]) -> float:
    """Seconds dcmtk's storescu takes to send ``files`` again, one association each (the peer's figure)."""
    start = time.perf_counter()
    for path in files:
        sent = subprocess.run([tool("storescu"), "-aet", "TELERAD", "-aec", STATION_AE, "127.0.0.1", str(port), str(path)],
                              capture_output=True, text=True)
        if sent.returncode:
            raise SystemExit(f"storescu failed on {path.name}: {sent.stderr.strip()}")
    return time.perf_counter() - start


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signatures", type=int, default=15, help="signatures per report (default 15)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ct_files = sorted((data_folder() / SOURCE_SERIES).glob("*.dcm"))
    ecg_file = Path(get_testdata_file("waveform_ecg.dcm"))
    with tempfile.TemporaryDirectory(prefix="telerad-bench-reports-") as folder:
        work = Path(folder)
        port = free_port()
        config = make_config(work, port)
        sessions = make_session_factory(make_engine(config.database_url))
        passwords = prepare(config, sessions)
        ct_uid = receive(config, sessions, ct_files, "DG_CT")
        ecg_uid = receive(config, sessions, [ecg_file], "LIJIA_ECG")
        results = {}
        signature_ids: list[int] = []
        for name, uid, author, template, impression in (
            ("ECG report (12-lead, rhythm strip)", ecg_uid, "reader-ecg", "ecg-12lead", "窦性心律，正常心电图。"),
            ("CT report (3 key images)", ct_uid, "reader-ct", "ct-abdomen", "腹部CT平扫未见明显异常。"),
        ):
            report_id = draft(sessions, uid, author, template, impression)
            results[name] = sign_many(config, sessions, report_id, author, passwords[author], args.signatures)
            signature_ids += results[name][2]
        receiver = station_receiver(port, work / "station")
        try:
            sent, seconds, pdf_bytes = deliver_all(config, sessions, signature_ids)
        finally:
            receiver.terminate()
            receiver.wait(10)
        peer_port = free_port()
        receiver = station_receiver(peer_port, work / "peer")  # a fresh receiver: nothing it holds already
        try:
            peer_seconds = storescu_each(peer_port, sorted((work / "station").iterdir()))
        finally:
            receiver.terminate()
            receiver.wait(10)
    print("\nSign and render (password check, key, CMS signature, PDF with CJK font, PAdES signature, store)")
    print(f"  {'report':<40} {'first (new key)':>16} {'median':>10} {'p90':>10}")
    for name, (first, rest, _) in results.items():
        p90 = statistics.quantiles(rest, n=10)[-1] if len(rest) >= 2 else rest[0]
        print(f"  {name:<40} {first:>15.2f}s {statistics.median(rest):>9.2f}s {p90:>9.2f}s")
    print("\nDelivery to the station (Encapsulated PDF, one association and C-STORE each, dcmtk storescp)")
    print(f"  Telerad: {sent} of {len(signature_ids)} sent in {seconds:.2f} s: {sent / seconds:.1f} reports/s, "
          f"{pdf_bytes / 1e6 / seconds:.2f} MB/s of PDF (mean PDF {pdf_bytes / max(1, len(signature_ids)) / 1e3:.0f} kB)")
    print(f"  dcmtk storescu, the same {sent} objects, one association each: {peer_seconds:.2f} s, "
          f"{sent / peer_seconds:.1f} objects/s")


if __name__ == "__main__":
    main()
