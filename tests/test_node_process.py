"""The node as a real process: ``kill -9`` loses nothing acknowledged; several receivers share the port."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from conftest import ROOT, echo, tool, wait_for
from dicom_files import series_from
from pacs_node.index import Instance
from pacs_node.storage import FileStorage
from telerad.config import Config


def _environment(config: Config) -> dict[str, str]:
    return {
        **os.environ,
        "TELERAD_SERVICE_DATA_DIR": str(config.data_dir),
        "TELERAD_DATABASE_URL": config.database_url,
        "TELERAD_REDIS_URL": "",
        "TELERAD_DICOM_HOST": "127.0.0.1",
        "TELERAD_DICOM_PORT": str(config.dicom.port),
    }


@pytest.fixture
def start_node(config: Config, sessions: sessionmaker) -> Iterator:
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> subprocess.Popen[bytes]:
        node = subprocess.Popen(
            [sys.executable, "-m", "telerad", "--config", str(ROOT / "config.yaml"), "dicom", *arguments],
            env=_environment(config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(node)
        wait_for(lambda: echo(config.dicom.port), node, "the node accepting associations")
        return node

    yield start
    for node in started:
        if node.poll() is None:
            node.terminate()
            node.wait(15)


def _indexed(sessions: sessionmaker) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Instance))


def _listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (each receiver process has its own, via SO_REUSEPORT)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def _acknowledged(log: str) -> list[Path]:
    """Files storescu (verbose) got a Success response for."""
    acknowledged, current = [], None
    for line in log.splitlines():
        if match := re.match(r"I: Sending file: (.+)$", line):
            current = Path(match.group(1))
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.append(current)
    return acknowledged


def test_kill_9_loses_no_acknowledged_instance(
    start_node, config: Config, sessions: sessionmaker, data: Path, tmp_path: Path
):
    files = series_from(sorted((data / "ct/series_JANCT000_3slice").glob("*.dcm")), tmp_path / "series", 120)
    node = start_node()
    sender = subprocess.Popen(
        [tool("storescu"), "-v", "-aet", "DG_CT", "-aec", "TELERAD", "127.0.0.1", str(config.dicom.port), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while _indexed(sessions) < 30:  # mid-transfer, whatever the node is doing at that moment
        assert sender.poll() is None, "the transfer ended before the node could be killed"
    os.kill(node.pid, signal.SIGKILL)
    node.wait()
    log, _ = sender.communicate(timeout=120)
    acknowledged = _acknowledged(log)
    assert 0 < len(acknowledged) < len(files), log[-2000:]

    start_node()  # comes back up on the same data
    storage = FileStorage(config.data_dir / "storage")
    with sessions() as session:
        for path in acknowledged:
            uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
            stored = session.scalar(select(Instance).where(Instance.sop_instance_uid == uid))
            assert stored is not None, f"{path.name} was acknowledged but is not indexed"
            assert hashlib.sha256(storage.read(stored.storage_key)).hexdigest() == stored.sha256
    resend = subprocess.run(
        [tool("storescu"), "-aet", "DG_CT", "-aec", "TELERAD", "127.0.0.1", str(config.dicom.port), *map(str, files)],
        capture_output=True, text=True,
    )
    assert resend.returncode == 0, resend.stderr
    assert _indexed(sessions) == len(files)


def test_several_receiver_processes_share_the_port(
    start_node, config: Config, sessions: sessionmaker, data: Path, tmp_path: Path
):
    node = start_node("--workers", "2")
    wait_for(lambda: _listening_sockets(config.dicom.port) == 2, node, "both receivers listening")
    batches = [
        series_from([data / "ct/CT_small_pydicom.dcm"], tmp_path / f"batch{number}", 15) for number in range(4)
    ]
    senders = [
        subprocess.Popen(
            [tool("storescu"), "-aet", "DG_CT", "-aec", "TELERAD", "127.0.0.1", str(config.dicom.port), *map(str, batch)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for batch in batches
    ]
    for sender in senders:
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
    assert _indexed(sessions) == 60
    assert _listening_sockets(config.dicom.port) == 2  # no receiver died on the way
