"""Ingest benchmark: our DICOM node against Orthanc, both fed by dcmtk ``storescu``.

What is measured: the wall time dcmtk ``storescu`` takes to send a 512x512 CT
series (300 instances by default, ~158 MB) to a C-STORE SCP, from starting the
sender(s) until the last one exits, in two modes:

* one association: one ``storescu``; our node runs ``telerad dicom --workers 1``;
* parallel associations: the series split in four consecutive parts sent by
  four ``storescu`` at once; our node runs ``telerad dicom --workers 4``.

Orthanc (default configuration: 4 DICOM threads, fsync of every file, SQLite
index) is measured the same way. Each run sends a series newly built from the
real GE slices in ``shared/data/ct/series_JANCT000_3slice`` (cycled) with new
Study, Series and SOP Instance UIDs, Instance Numbers and positions, so every
run stores new instances; the files are flushed to disk before the clock
starts, and only one server is busy at a time (our node is stopped while
Orthanc is measured). Both servers answer C-STORE only once the file is on
disk and indexed. Each run is verified: every ``storescu`` exits 0 and the
server's instance count grew by the series' size (our database's ``instances``
table, Orthanc's ``/statistics``). Printed: the median of the runs as
instances/s and MB/s (10^6 bytes of DICOM files) for both, and the ratio
ours / Orthanc.

Everything listens on 127.0.0.1 in a throw-away folder (``--keep`` keeps it):
our node with SQLite (or ``--database-url``, an existing PostgreSQL database),
Orthanc with a throw-away JSON configuration.

Run from the repository root::

    .venv/bin/python -m bench.ingest [--runs 3] [--instances 300] [--workers-parallel 4]

It needs dcmtk (``storescu``, ``echoscu``) and Orthanc, and the real data at
``../shared/data`` beside the checkout or at ``TELERAD_TEST_DATA``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileDataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, func, select

from pacs_node.index import Instance
from telerad.config import load_config
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare

REPO = Path(__file__).resolve().parent.parent
SOURCE_SERIES = Path("ct/series_JANCT000_3slice")
CALLING_AE = "DG_CT"
NODE_AE = "TELERAD"
ORTHANC_AE = "ORTHANC"
PARALLEL_ASSOCIATIONS = 4
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Target:
    """A running C-STORE SCP to send to, and how to count what it holds."""

    name: str
    ae_title: str
    port: int
    count_instances: Callable[[], int]


@dataclass(frozen=True)
class Mode:
    """How a series is sent: over how many associations, with how many receivers of ours."""

    label: str
    associations: int
    workers: int


# --- tools and data --------------------------------------------------------------------------


@functools.cache
def tool(name: str) -> str:
    """The path of a system tool (dcmtk, Orthanc), skipping the venv's pynetdicom look-alikes."""
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    found = shutil.which(name, path=os.pathsep.join([*folders, "/usr/sbin"]))
    if found is None:
        sys.exit(f"{name} not found: install dcmtk and orthanc")
    return found


def data_folder() -> Path:
    """The real DICOM files: ``TELERAD_TEST_DATA`` or ``<repo>/../shared/data``."""
    folder = Path(os.environ.get("TELERAD_TEST_DATA", REPO.parent / "shared" / "data"))
    if not (folder / SOURCE_SERIES).is_dir():
        sys.exit(f"real data not found: {folder / SOURCE_SERIES}")
    return folder


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_sources(folder: Path) -> list[FileDataset]:
    """The source slices, ordered by Instance Number."""
    slices = [dcmread(path) for path in sorted(folder.glob("*.dcm"))]
    return sorted(slices, key=lambda ds: int(ds.InstanceNumber))


def build_series(sources: Sequence[FileDataset], count: int, folder: Path) -> list[Path]:
    """Write ``count`` slices cycling over ``sources`` as one new series; returns the files in order.

    The source datasets serve as templates: their UIDs, number and position are overwritten.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    first = [float(v) for v in sources[0].ImagePositionPatient]
    spacing = float(sources[1].ImagePositionPatient[2]) - first[2] if len(sources) > 1 else -1.0
    files = []
    for index in range(count):
        ds = sources[index % len(sources)]
        uid = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = index + 1
        z = first[2] + index * spacing
        ds.ImagePositionPatient = [first[0], first[1], z]
        if "SliceLocation" in ds:
            ds.SliceLocation = z
        path = folder / f"ct{index + 1:04d}.dcm"
        ds.save_as(path)
        files.append(path)
    os.sync()
    return files


def split(files: Sequence[Path], parts: int) -> list[list[Path]]:
    """``files`` cut into ``parts`` consecutive groups of nearly equal size."""
    return [list(files[i * len(files) // parts : (i + 1) * len(files) // parts]) for i in range(parts)]


# --- processes ---------------------------------------------------------------------------------


def echo(ae_title: str, port: int) -> bool:
    """Whether the SCP at ``port`` answers a C-ECHO from the registered calling AE title."""
    command = [tool("echoscu"), "-aet", CALLING_AE, "-aec", ae_title, "-to", "5", "127.0.0.1", str(port)]
    return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log file, for an error message."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], log: Path, ae_title: str, port: int) -> Iterator[None]:
    """Run a server in its own process group until the block ends; ready once it answers C-ECHO."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not echo(ae_title, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start; {log}:\n{tail(log)}")
            time.sleep(0.2)
        yield
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def our_node(work: Path, database_url: str | None, workers: int) -> Iterator[Target]:
    """Our node (``telerad dicom``) on a free loopback port, its sites provisioned."""
    port = free_port()
    data_dir = work / "telerad"
    overrides = {
        "TELERAD_SERVICE_DATA_DIR": str(data_dir),
        "TELERAD_DATABASE_URL": database_url or f"sqlite:///{data_dir / 'telerad.db'}",
        "TELERAD_DICOM_HOST": "127.0.0.1",
        "TELERAD_DICOM_PORT": str(port),
        "TELERAD_REDIS_URL": "",
    }
    env = {**os.environ, **overrides}
    config = load_config(REPO / "config.yaml", env)
    engine = make_engine(config.database_url)
    try:
        prepare(config, make_session_factory(engine))
        command = [str(Path(sys.prefix) / "bin" / "telerad"), "--config", str(REPO / "config.yaml"), "dicom"]
        log = work / f"telerad-workers{workers}.log"
        with running([*command, "--workers", str(workers)], env, log, NODE_AE, port):
            yield Target("telerad", NODE_AE, port, lambda: instances_in_index(engine))
    finally:
        engine.dispose()


def instances_in_index(engine: Engine) -> int:
    """Rows in our node's ``instances`` table."""
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Instance)).scalar_one()


@contextlib.contextmanager
def orthanc(work: Path) -> Iterator[Target]:
    """Orthanc with a throw-away configuration and storage, defaults otherwise."""
    port, http_port = free_port(), free_port()
    folder = work / "orthanc"
    folder.mkdir()
    configuration = {
        "Name": "bench",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": ORTHANC_AE,
        "DicomPort": port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "StorageCompression": False,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(configuration, indent=2))
    env = {**os.environ, "TCP_NODELAY": "1"}
    with running([tool("Orthanc"), str(path)], env, work / "orthanc.log", ORTHANC_AE, port):
        yield Target("Orthanc", ORTHANC_AE, port, lambda: orthanc_instances(http_port))


def orthanc_instances(http_port: int) -> int:
    """Orthanc's CountInstances."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/statistics", timeout=30) as answer:
        return int(json.load(answer)["CountInstances"])


# --- measuring ---------------------------------------------------------------------------------


def send(target: Target, groups: Sequence[Sequence[Path]], logs: Path) -> float:
    """Send each group with its own ``storescu`` at once; returns the wall time in seconds."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    base = [tool("storescu"), "-aet", CALLING_AE, "-aec", target.ae_title, "127.0.0.1", str(target.port)]
    outputs = [logs / f"storescu-{target.name}-{number}.log" for number in range(len(groups))]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        for group, output in zip(groups, outputs, strict=True):
            with output.open("wb") as out:
                command = [*base, *map(str, group)]
                processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        codes = [process.wait() for process in processes]
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for code, output in zip(codes, outputs, strict=True):
        if code != 0:
            raise RuntimeError(f"storescu to {target.name} exited with {code}; {output}:\n{tail(output)}")
    return elapsed


def timed_run(target: Target, files: Sequence[Path], associations: int, logs: Path) -> float:
    """Send the series to ``target`` and check that all of it was stored; returns seconds."""
    before = target.count_instances()
    os.sync()
    seconds = send(target, split(files, associations), logs)
    stored = target.count_instances() - before
    if stored != len(files):
        raise RuntimeError(f"{target.name} stored {stored} of {len(files)} instances")
    return seconds


def measure(
    mode: Mode, target: Target, sources: Sequence[FileDataset], args: argparse.Namespace, work: Path
) -> list[float]:
    """Send a newly built series to ``target`` ``args.runs`` times in ``mode``; returns the seconds."""
    seconds = []
    for run in range(args.runs):
        files = build_series(sources, args.instances, work / "series")
        seconds.append(timed_run(target, files, mode.associations, work))
        print(f"  {mode.label}, {target.name} run {run + 1}/{args.runs}: {seconds[-1]:.2f} s", flush=True)
    return seconds


def report(results: dict[str, dict[str, list[float]]], instances: int, megabytes: float, runs: int) -> None:
    """Print the median throughput per mode and target, and the ratio ours / Orthanc."""
    print(f"\n{instances} instances of 512x512 CT, {megabytes:.1f} MB; median of {runs} run(s), storescu wall time\n")
    print(f"{'':30}{'telerad':^20}{'Orthanc':^20}{'ratio':>14}")
    print(f"{'':30}{'inst/s':>10}{'MB/s':>10}{'inst/s':>10}{'MB/s':>10}{'ours/Orthanc':>14}")
    print("-" * 84)
    for label, seconds in results.items():
        ours, theirs = statistics.median(seconds["telerad"]), statistics.median(seconds["Orthanc"])
        print(
            f"{label:30}{instances / ours:10.1f}{megabytes / ours:10.1f}"
            f"{instances / theirs:10.1f}{megabytes / theirs:10.1f}{theirs / ours:14.2f}"
        )


# --- entry point -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per mode and target (default: 3)")
    parser.add_argument("--instances", type=int, default=300, help="instances in the series (default: 300)")
    parser.add_argument("--workers-single", type=int, default=1, help="our receivers, one association (default: 1)")
    parser.add_argument(
        "--workers-parallel", type=int, default=4,
        help=f"our receivers, {PARALLEL_ASSOCIATIONS} associations (default: 4)",
    )
    parser.add_argument("--database-url", help="our node's database (default: SQLite in the throw-away folder)")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away folder (logs, storage)")
    args = parser.parse_args(argv)
    if min(args.runs, args.instances, args.workers_single, args.workers_parallel) < 1:
        parser.error("--runs, --instances and the worker counts must be at least 1")
    return args


def _interrupt(_signal: int, _frame: object) -> None:
    """Treat SIGTERM like Ctrl+C, so the servers are stopped and the folder removed."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Build the series, start Orthanc and our node, measure and print the table."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    sources = load_sources(data_folder() / SOURCE_SERIES)
    modes = [
        Mode(f"1 association (workers {args.workers_single})", 1, args.workers_single),
        Mode(
            f"{PARALLEL_ASSOCIATIONS} associations (workers {args.workers_parallel})",
            PARALLEL_ASSOCIATIONS, args.workers_parallel,
        ),
    ]
    work = Path(tempfile.mkdtemp(prefix="telerad-bench-"))
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with orthanc(work) as peer:
            for mode in modes:
                with our_node(work, args.database_url, mode.workers) as ours:
                    ours_seconds = measure(mode, ours, sources, args, work)
                results[mode.label] = {ours.name: ours_seconds, peer.name: measure(mode, peer, sources, args, work)}
        megabytes = sum(path.stat().st_size for path in (work / "series").iterdir()) / 1e6
        report(results, args.instances, megabytes, args.runs)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
