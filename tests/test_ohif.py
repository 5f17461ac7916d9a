"""The OHIF Viewer under /ohif/: served from our origin behind sign-in, rewritten for its prefix,
configured for our DICOMweb — and, in Chromium, a station's CT study listed and displayed.

OHIF itself comes from the npm registry (``scripts/fetch-ohif``, about 50 MB the
first time) into ``var/ohif`` of the checkout, or the folder ``TELERAD_TEST_OHIF``
names; later runs reuse it.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageStat
from pydicom import dcmread
from pydicom.uid import generate_uid

from browser import LiveServer, WatchedPage, demo_passwords, sign_in
from conftest import ROOT, make_config, require, shared_data
from dicom_files import copy_with_new_uids, send
from telerad.config import Config
from telerad.web import create_app

OHIF_VERSION = "@ohif/app@3.13.2"


@pytest.fixture(scope="session")
def ohif_dist() -> Path:
    """OHIF's prebuilt ``dist``, fetched once with ``scripts/fetch-ohif`` (idempotent)."""
    folder = Path(os.environ.get("TELERAD_TEST_OHIF", ROOT / "var" / "ohif"))
    marker = folder / ".ohif-version"
    if not (marker.is_file() and marker.read_text().strip() == OHIF_VERSION):
        if shutil.which("npm") is None:
            require("npm is needed to fetch OHIF (scripts/fetch-ohif)")
        fetched = subprocess.run(
            [ROOT / "scripts" / "fetch-ohif", folder], capture_output=True, text=True, timeout=900
        )
        assert fetched.returncode == 0, fetched.stderr
    return folder


@pytest.fixture
def config(tmp_path: Path, database_url: str, ohif_dist: Path) -> Config:
    """The test configuration with ``web.ohif_dir`` set."""
    return make_config(tmp_path, database_url, TELERAD_WEB_OHIF_DIR=str(ohif_dist))


def signed_in_client(config: Config, name: str) -> FlaskClient:
    """A test client of the app signed in through the real form as ``name``."""
    client = create_app(config).test_client()
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', form
    )
    assert token, form
    answer = client.post(
        "/login", data={"name": name, "password": demo_passwords(config)[name], "csrf_token": token.group(1)}
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def test_ohif_needs_sign_in(config: Config, sessions: object) -> None:
    client = create_app(config).test_client()
    answer = client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
    assert answer.status_code == 302
    assert answer.location == "/login?next=/ohif/viewer?StudyInstanceUIDs%3D1.2.3"
    assert client.get("/ohif/app-config.js").status_code == 302


def test_index_is_rewritten_for_the_prefix(config: Config, sessions: object) -> None:
    client = signed_in_client(config, "dongguan")
    answer = client.get("/ohif/")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-cache"
    assert 'window.PUBLIC_URL="/ohif/"' in html and 'window.PUBLIC_URL="/"' not in html
    assert re.search(r'src="/ohif/app\.bundle\.[0-9a-f]{16}\.js"', html)
    assert not re.search(r'(href|src)="/(?!ohif/)', html)
    # the application's own routes get the same page
    assert client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3").get_data(as_text=True) == html
    assert client.get("/ohif/viewer/dicomweb").get_data(as_text=True) == html
    assert client.get("/ohif").status_code == 308


def test_bundles_load_chunks_and_workers_under_the_prefix(config: Config, sessions: object) -> None:
    client = signed_in_client(config, "supervisor")
    html = client.get("/ohif/").get_data(as_text=True)
    bundle_path = re.search(r'src="(/ohif/app\.bundle\.[0-9a-f]{16}\.js)"', html).group(1)
    answer = client.get(bundle_path)
    bundle = answer.get_data()
    assert answer.status_code == 200 and answer.mimetype == "text/javascript"
    assert answer.headers["Cache-Control"] == "max-age=31536000, immutable"
    assert b'__webpack_require__.p = "/ohif/";' in bundle and b'__webpack_require__.p = "/";' not in bundle
    squeezed = client.get(bundle_path, headers={"Accept-Encoding": "gzip, br"})
    assert squeezed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(squeezed.get_data()) == bundle
    again = client.get(bundle_path, headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304
    # a worker bundle finds its own chunks under the prefix too; the font comes from the prefix
    worker = client.get("/ohif/" + next(p.name for p in config.web.ohif_dir.glob("compute.bundle.*.js")))
    assert b'__webpack_require__.p = "/ohif/";' in worker.get_data()
    assert b"url(/ohif/" in client.get("/ohif/app.bundle.css").get_data()
    # files sent as they are, and what is not there
    wasm = next(config.web.ohif_dir.glob("*.wasm"))
    answer = client.get(f"/ohif/{wasm.name}")
    assert answer.status_code == 200 and answer.get_data() == wasm.read_bytes()
    assert client.get("/ohif/no-such-chunk.js").status_code == 404
    assert client.get("/ohif/../config.yaml").status_code == 404


def test_app_config_points_at_our_dicomweb(config: Config, sessions: object) -> None:
    client = signed_in_client(config, "dongguan")
    script = client.get("/ohif/app-config.js")
    text = script.get_data(as_text=True)
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert '"routerBasename": "/ohif"' in text
    assert 'window.location.origin + "/dicomweb"' in text
    assert '"investigationalUseDialog": {\n    "option": "never"\n  }' in text
    assert "d14fa38qiwhyfd.cloudfront.net" not in text  # not the dist's public demo server


def test_without_ohif_dir_nothing_is_served(tmp_path: Path, database_url: str, sessions: object) -> None:
    config = make_config(tmp_path, database_url)
    assert config.web.ohif_dir is None
    assert signed_in_client(config, "dongguan").get("/ohif/").status_code == 404


# --- in Chromium -----------------------------------------------------------------------------------

# What the page may report without failing the test, each with its reason.
IGNORED = (
    r"^http://127\.0\.0\.1:\d+/favicon\.ico$",  # Telerad's sign-in page has no icon; Chromium asks for one
)

# True once the viewport's canvas shows an image: many grey levels, not one flat colour.
SHOWS_AN_IMAGE = """
(canvas) => {
  if (!canvas.width || !canvas.height) return null;
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const context = copy.getContext('2d');
  context.drawImage(canvas, 0, 0);
  const { data } = context.getImageData(0, 0, copy.width, copy.height);
  const levels = new Set();
  let sum = 0, squares = 0, n = 0;
  for (let i = 0; i < data.length; i += 4 * 7) {
    const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
    levels.add(Math.round(grey)); sum += grey; squares += grey * grey; n += 1;
  }
  const variance = squares / n - (sum / n) ** 2;
  return levels.size > 32 && variance > 100 ? { levels: levels.size, variance, width: copy.width } : null;
}
"""


def ct_series(folder: Path, count: int, **patient: object) -> list[Path]:
    """A contiguous axial CT series of ``count`` slices made from the three real JANCT000 slices."""
    sources = sorted((shared_data() / "ct" / "series_JANCT000_3slice").glob("*.dcm"))
    study, series = generate_uid(), generate_uid()
    first = dcmread(sources[0], stop_before_pixels=True)
    x, y, z = (float(value) for value in first.ImagePositionPatient)
    return [
        copy_with_new_uids(
            sources[number % len(sources)], folder, f"ct{number:03d}.dcm",
            StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=number + 1,
            ImagePositionPatient=[x, y, z - number], SliceLocation=z - number,
            StudyDescription="CT CHEST", SeriesDescription="AXIAL 1mm", **patient,
        )
        for number in range(count)
    ]


def test_station_sees_its_ct_study_in_ohif(
    live_server: LiveServer, watched: WatchedPage, node: object, config: Config, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    ct = ct_series(tmp_path / "ct", 12, PatientName="LIU^HUA", PatientID="DG-0001")
    xray = copy_with_new_uids(
        shared_data() / "xray" / "dx_image_highdicom_Fujifilm.dcm", tmp_path / "dx",
        PatientName="CHEN^MEI", PatientID="DG-0002",
    )
    elsewhere = copy_with_new_uids(
        shared_data() / "xray" / "dx_image_highdicom_Fujifilm.dcm", tmp_path / "xh",
        PatientName="ZHOU^XIHE", PatientID="XH-0001",
    )
    port = config.dicom.port
    statuses = send(port, "DG_CT", *ct) + send(port, "DG_DR", xray) + send(port, "XH_DR", elsewhere)
    assert [status.Status for status in statuses] == [0] * 14
    ct_study = dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID

    page = watched.page
    sign_in(page, live_server.url, "dongguan", live_server.passwords["dongguan"], next_path="/ohif/")
    expect(page).to_have_url(f"{live_server.url}/ohif/")
    expect(page.get_by_text(re.compile(r"LIU.*HUA")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"CHEN.*MEI")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"ZHOU"))).to_have_count(0)  # another station's patient
    watched.screenshot("study-list")
    assert page.evaluate("crossOriginIsolated"), "COOP/COEP should give the viewer SharedArrayBuffer"

    page.goto(f"{live_server.url}/ohif/viewer?StudyInstanceUIDs={ct_study}")
    canvas = page.locator(".cornerstone-viewport-element canvas").first
    expect(canvas).to_be_visible()
    shown = page.wait_for_function(SHOWS_AN_IMAGE, arg=canvas.element_handle(), timeout=60_000).json_value()
    assert shown["levels"] > 32
    crop = watched.screenshot("viewer")
    box = canvas.bounding_box()
    viewport = Image.open(crop).convert("L").crop(
        (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"]))
    )
    assert ImageStat.Stat(viewport).stddev[0] > 10, "the viewport looks flat in the screenshot"
    expect(page.get_by_text(re.compile(r"\(1/12\)"))).to_be_visible()
    canvas.hover()
    page.mouse.wheel(0, 120)  # the next slice: one more frame fetched and drawn
    expect(page.get_by_text(re.compile(r"\(2/12\)"))).to_be_visible()
    page.wait_for_function(SHOWS_AN_IMAGE, arg=canvas.element_handle())
    watched.screenshot("viewer-slice-2")
    watched.assert_clean(IGNORED)


def test_supervisor_sees_every_station_in_ohif(
    live_server: LiveServer, watched: WatchedPage, node: object, config: Config, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    xray = shared_data() / "xray" / "dx_image_highdicom_Fujifilm.dcm"
    port = config.dicom.port
    statuses = send(port, "DG_DR", copy_with_new_uids(xray, tmp_path, PatientName="CHEN^MEI")) + send(
        port, "XH_DR", copy_with_new_uids(xray, tmp_path, PatientName="ZHOU^XIHE")
    )
    assert [status.Status for status in statuses] == [0, 0]

    page = watched.page
    sign_in(page, live_server.url, "supervisor", live_server.passwords["supervisor"], next_path="/ohif/")
    expect(page.get_by_text(re.compile(r"CHEN.*MEI")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"ZHOU.*XIHE")).first).to_be_visible()
    watched.screenshot("study-list")
    watched.assert_clean(IGNORED)
