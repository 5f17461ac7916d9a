"""Viewer benchmark: render time on the server, and the first image of a 300-slice CT on a slow line.

What is measured, on one run of this process tree:

1. Server render time (in process, ``viewer.rendering``): a 512×512 CT frame to
   JPEG at quality 85 — cold (open the stored file, parse, decode, render) and
   warm (decoded frame in the cache, as when a reader changes the window) — and
   a large X-ray (the real 1955×1841 CR in ``shared/data/xray``, the largest
   real projection image we have) at full size and at 1024 px. Medians.
2. Time to first image of a 300-slice CT study (built from the real GE slices
   in ``shared/data/ct/series_JANCT000_3slice``, 158 MB) over a 2 Mbit/s line
   with 100 ms round-trip latency (50 ms each way; :mod:`bench.throttle`, a
   proxy shared by every connection, as this kernel has no ``tc netem``):
   Debian's Chromium, signed in, opens ``/studies/<uid>`` with an empty cache;
   the clock stops when ``#viewport`` shows its first image (``data-loaded``),
   then when that slice is at full quality. Bytes are what crossed the line
   towards the browser in that time.
3. The same line for a client that fetches full uncompressed frames over
   WADO-RS (what a naive DICOMweb viewer does): series search, series metadata,
   then frame 1 as ``application/octet-stream``; time and bytes to that first
   frame, measured; and the bytes and line time for all 300 frames (measured
   sizes unthrottled; the time is computed at the line rate because sending
   158 MB at 2 Mbit/s takes over ten minutes), beside our viewer's bytes for
   every slice at its preview and full quality.

Run from the repository root (needs the dev extras, Debian's chromium and the
real data beside the checkout)::

    .venv/bin/python -m bench.viewer [--slices 300] [--renders 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from bench.ingest import REPO, SOURCE_SERIES, build_series, data_folder, free_port, load_sources
from bench.throttle import Throttle
from pacs_node.index import Instance, Series, Study
from pacs_node.node import archive_for, load_senders
from telerad.config import Config, load_config
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare
from telerad.users import create_token
from telerad.web import create_app
from viewer.rendering import open_image, render

LINE_BPS = 2_000_000
ONE_WAY_DELAY_S = 0.05
LARGE_XRAY = Path("xray/RG1_UNCR_CR_1955x1841.dcm")
READER = "supervisor"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def median_ms(action: Callable[[], object], runs: int) -> float:
    """The median wall time of ``action`` in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def render_times(ct_files: Sequence[Path], xray: Path, renders: int) -> dict[str, float]:
    """Median render times (ms) of CT frames and of the large X-ray, cold and warm."""
    files = list(ct_files[:renders])
    cold = statistics.median(
        [median_ms(lambda path=path: render(open_image(path), 0, fmt="jpeg", quality=85), 1) for path in files]
    )
    image = open_image(files[0])
    render(image, 0)
    warm = median_ms(lambda: render(image, 0, fmt="jpeg", quality=85), renders)
    large = open_image(xray)
    render(large, 0)
    return {
        "CT 512×512 JPEG q85, cold (read, decode, render)": cold,
        "CT 512×512 JPEG q85, warm (window change)": warm,
        "CR 1955×1841 JPEG q85 full size, cold": median_ms(lambda: render(open_image(xray), 0), max(3, renders // 10)),
        "CR 1955×1841 JPEG q85 full size, warm": median_ms(lambda: render(large, 0), renders),
        "CR 1955×1841 JPEG q85 at 1024 px, warm": median_ms(lambda: render(large, 0, size=1024), renders),
    }


def make_config(work: Path) -> Config:
    """The repository's configuration on a throw-away data directory and SQLite database."""
    environ = {
        "TELERAD_SERVICE_DATA_DIR": str(work / "var"),
        "TELERAD_DATABASE_URL": f"sqlite:///{work / 'telerad.db'}",
        "TELERAD_REDIS_URL": "",
        "TELERAD_SERVICE_LOAD_SAMPLES": "false",
    }
    return load_config(REPO / "config.yaml", environ)


def store(config: Config, files: Sequence[Path]) -> tuple[str, dict[str, str]]:
    """Receive ``files`` from the Dongguan CT as the node would; the study UID and demo passwords."""
    sessions = make_session_factory(make_engine(config.database_url))
    passwords = prepare(config, sessions)
    archive = archive_for(config, sessions)
    sender = load_senders(sessions)["DG_CT"]
    for path in files:
        archive.receive(path.read_bytes(), sender)
    with sessions() as session:
        study_uid = session.scalar(select(Study.study_uid))
    return study_uid, passwords


@contextmanager
def serving(config: Config) -> Iterator[str]:
    """The web app in a threaded server on a free port; yields its base URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


def viewer_first_image(base: str, study_uid: str, password: str, runs: int) -> dict[str, float]:
    """Chromium through the slow line: seconds and bytes to the first image and to full quality (medians)."""
    upstream = ("127.0.0.1", int(base.rsplit(":", 1)[1]))
    first, full, first_bytes, full_bytes = [], [], [], []
    with sync_playwright() as playwright, Throttle(upstream, LINE_BPS, ONE_WAY_DELAY_S) as line:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        url = f"http://127.0.0.1:{line.port}"
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            page = context.new_page()
            page.goto(f"{url}/login")
            page.fill("#name", READER)
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda address: "/login" not in address)
            line.reset_counters()
            start = time.perf_counter()
            page.goto(f"{url}/studies/{study_uid}")
            page.wait_for_selector("#viewport[data-loaded]", timeout=120_000)
            first.append(time.perf_counter() - start)
            first_bytes.append(line.bytes_down)
            page.wait_for_selector("#viewport[data-loaded=full]", timeout=120_000)
            full.append(time.perf_counter() - start)
            full_bytes.append(line.bytes_down)
            context.close()
        browser.close()
    return {
        "first": statistics.median(first), "first_bytes": statistics.median(first_bytes),
        "full": statistics.median(full), "full_bytes": statistics.median(full_bytes),
    }


def wado_first_frame(base: str, study_uid: str, token: str) -> dict[str, float]:
    """A client of full uncompressed frames over WADO-RS, through the same line: time and bytes to frame 1."""
    upstream = ("127.0.0.1", int(base.rsplit(":", 1)[1]))
    with Throttle(upstream, LINE_BPS, ONE_WAY_DELAY_S) as line, requests.Session() as client:
        client.headers["Authorization"] = f"Bearer {token}"
        root = f"http://127.0.0.1:{line.port}/dicomweb"
        start = time.perf_counter()
        series = client.get(f"{root}/studies/{study_uid}/series", headers={"Accept": "application/dicom+json"})
        series_uid = series.json()[0]["0020000E"]["Value"][0]
        metadata = client.get(
            f"{root}/studies/{study_uid}/series/{series_uid}/metadata", headers={"Accept": "application/dicom+json"}
        ).json()
        first = min(metadata, key=lambda item: int(item.get("00200013", {}).get("Value", [0])[0]))
        sop_uid = first["00080018"]["Value"][0]
        frame = client.get(
            f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        frame.raise_for_status()
        return {"first": time.perf_counter() - start, "first_bytes": line.bytes_down}


def whole_study_bytes(base: str, study_uid: str, token: str, config: Config) -> dict[str, int]:
    """Unthrottled: bytes our viewer fetches for every slice (preview + full) and a WADO-RS client's frames."""
    sessions = make_session_factory(make_engine(config.database_url))
    with sessions() as session:
        rows = session.execute(
            select(Instance.sop_instance_uid, Instance.sha256, Series.series_uid)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_uid == study_uid)
        ).all()
    viewer_bytes = wado_bytes = 0
    with requests.Session() as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for sop_uid, sha256, series_uid in rows:
            frames = f"{base}/viewer/instances/{sop_uid}/frames/1.jpeg"
            for params in ({"size": 256, "q": 60, "v": sha256[:16]}, {"v": sha256[:16]}):
                viewer_bytes += len(client.get(frames, params=params).content)
            wado = client.get(
                f"{base}/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1",
                headers={"Accept": 'multipart/related; type="application/octet-stream"'},
            )
            wado_bytes += len(wado.content)
    return {"viewer": viewer_bytes, "wado": wado_bytes}


def line_seconds(size: float) -> float:
    """Seconds to send ``size`` bytes at the line's rate."""
    return size * 8 / LINE_BPS


def report(renders: dict[str, float], ours: dict[str, float], wado: dict[str, float], totals: dict[str, int],
           slices: int) -> None:
    """Print the figures side by side."""
    print("\nServer render time (median, ms; target < 25 ms per CT frame)")
    for name, value in renders.items():
        print(f"  {name:<55} {value:8.2f}")
    print(f"\n{slices}-slice CT over {LINE_BPS / 1e6:g} Mbit/s, {2 * ONE_WAY_DELAY_S * 1000:.0f} ms round trip")
    print(f"  {'':<44} {'Telerad viewer':>16} {'WADO-RS raw frames':>20}")
    print(f"  {'time to first image (s; target < 1.5)':<44} {ours['first']:>16.2f} {wado['first']:>20.2f}")
    print(f"  {'bytes to first image (kB)':<44} {ours['first_bytes'] / 1e3:>16.1f} {wado['first_bytes'] / 1e3:>20.1f}")
    print(f"  {'time to first slice at full quality (s)':<44} {ours['full']:>16.2f} {'(same)':>20}")
    print(f"  {'bytes, every slice (MB)':<44} {totals['viewer'] / 1e6:>16.2f} {totals['wado'] / 1e6:>20.2f}")
    print(f"  {'line time, every slice (s, computed)':<44} {line_seconds(totals['viewer']):>16.0f} "
          f"{line_seconds(totals['wado']):>20.0f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300, help="slices in the CT study (default 300)")
    parser.add_argument("--renders", type=int, default=60, help="frames rendered for the render medians")
    parser.add_argument("--runs", type=int, default=3, help="browser runs over the slow line (median)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    data = data_folder()
    with tempfile.TemporaryDirectory(prefix="telerad-bench-viewer-") as folder:
        work = Path(folder)
        files = build_series(load_sources(data / SOURCE_SERIES), args.slices, work / "series")
        renders = render_times(files, data / LARGE_XRAY, args.renders)
        config = make_config(work)
        study_uid, passwords = store(config, files)
        sessions = make_session_factory(make_engine(config.database_url))
        with sessions() as session, session.begin():
            token = create_token(session, READER)
        with serving(config) as base:
            ours = viewer_first_image(base, study_uid, passwords[READER], args.runs)
            wado = wado_first_frame(base, study_uid, token)
            totals = whole_study_bytes(base, study_uid, token, config)
        report(renders, ours, wado, totals, args.slices)


if __name__ == "__main__":
    main()
