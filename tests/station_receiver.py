"""dcmtk's ``storescp`` playing a station's DICOM receiver, for the tests of report delivery.

Registered as a plugin in ``conftest.py``: the fixtures ``station_port`` (a free port) and ``station``
(a :class:`Station` on it, not yet started, stopped after the test) are there for every test module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from conftest import free_port, tool, wait_for

STATION_AE = "DG_REPORTS"


def _echo(port: int) -> bool:
    """Whether the station's SCP answers C-ECHO (dcmtk's echoscu, called by the station's own AE title)."""
    return subprocess.run(
        [tool("echoscu"), "-aet", "TELERAD", "-aec", STATION_AE, "127.0.0.1", str(port)], capture_output=True
    ).returncode == 0


class Station:
    """dcmtk's ``storescp`` as the station's DICOM receiver: files written exactly as received, named by UID."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [tool("storescp"), "-aet", STATION_AE, "-od", str(self.folder), "+B", "-uf", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _echo(self.port), self.process, "storescp listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def received(self) -> list[Path]:
        return sorted(path for path in self.folder.iterdir() if path.is_file())

    def instance(self, sop_instance_uid: str) -> Dataset:
        found = [path for path in self.received() if path.name.endswith(sop_instance_uid)]
        assert len(found) == 1, f"storescp holds {[path.name for path in self.received()]}"
        return dcmread(found[0])


@pytest.fixture
def station_port() -> int:
    return free_port()


@pytest.fixture
def station(station_port: int, tmp_path: Path) -> Iterator[Station]:
    """The Dongguan township's receiver, not yet started."""
    scp = Station(station_port, tmp_path / "station")
    yield scp
    scp.stop()
