"""Telerad's own pages in Debian's Chromium, as readers and stations use them: the worklist and its claim, the
CT stack viewer (scrolling, window presets and drags, inversion, a length in millimetres), the 12-lead ECG on
millimetre paper, the language switch in the header, and a station's own list of studies.

Real files go in the way stations send them (the node, or the archive as the node does), the reading queue
makes each task, and the web app serves a real Chromium (``tests/browser.py``). The browser's clock is set to
the service's injected clock, so countdowns read the same on both sides. Screenshots of every key step are
kept in the test's ``tmp_path`` (or ``$TELERAD_SCREENSHOTS``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy.orm import sessionmaker

from browser import LiveServer, WatchedPage, sign_in
from dicom_files import send, series_from
from pacs_node.node import Receiver
from telerad.config import Config
from alliance import CT, ECG, Alliance
from viewer import jobs as viewer_jobs

if TYPE_CHECKING:
    from playwright.sync_api import Page


# What a page may report without failing its test, each with its reason.
IGNORED = (
    r"/favicon\.ico$",  # the page frame declares no icon, so Chromium asks for /favicon.ico and gets a 404
)

CT_SLICES = 20
LATER = "rgb(27, 94, 32)"  # app.css --later: the green of a deadline more than four hours away

# The viewport canvas' pixels (grey levels of its red channel) inside the square the image fills at "fit":
# mean, variance, distinct levels and a hash of every pixel, so two images can be told apart exactly.
CANVAS_PIXELS = """
(canvas) => {
  const side = Math.min(canvas.width, canvas.height) - 4;
  const x0 = Math.floor((canvas.width - side) / 2), y0 = Math.floor((canvas.height - side) / 2);
  const { data } = canvas.getContext("2d").getImageData(x0, y0, side, side);
  let sum = 0, squares = 0, hash = 2166136261;
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const grey = data[i];
    sum += grey; squares += grey * grey; levels.add(grey);
    hash = Math.imul(hash ^ grey, 16777619) >>> 0;
  }
  const n = data.length / 4;
  return { mean: sum / n, variance: squares / n - (sum / n) ** 2, levels: levels.size, hash,
           width: canvas.width, height: canvas.height };
}
"""

# True once the viewport shows the full-quality rendering of the wanted slice, window and inversion.
SHOWS = """
([canvas, wanted]) => Object.entries(wanted).every(([name, value]) => canvas.dataset[name] === value)
"""

# True once the viewer has loaded every slice's preview and put its progress bar away again.
SERIES_LOADED = """
(count) => {
  const bar = document.getElementById("series-progress");
  return bar.max === count && bar.value === count && document.getElementById("series-loading").hidden;
}
"""


def pixels(page: Page) -> dict[str, Any]:
    """The viewport's pixels now (see ``CANVAS_PIXELS``)."""
    return page.locator("#viewport").evaluate(CANVAS_PIXELS)


def wait_until_shown(page: Page, **wanted: str) -> dict[str, Any]:
    """Wait until ``#viewport`` shows the full image with the wanted ``data-*`` values; return its pixels."""
    wanted = {"loaded": "full", **wanted}
    page.wait_for_function(SHOWS, arg=[page.locator("#viewport").element_handle(), wanted])
    return pixels(page)


def looks_like_an_image(shown: dict[str, Any]) -> bool:
    """Many grey levels and real contrast: not a blank, flat or barely drawn canvas."""
    return shown["levels"] > 32 and shown["variance"] > 100


def device_value(ds: Dataset, meaning: str) -> float:
    """A measurement the ECG cart wrote into the file (Waveform Annotation Sequence, PS3.3 C.10.10)."""
    for annotation in ds.WaveformAnnotationSequence:
        concept = annotation.get("ConceptNameCodeSequence")
        if concept and concept[0].CodeMeaning == meaning and "NumericValue" in annotation:
            return float(annotation.NumericValue)
    raise AssertionError(f"{meaning} is not in the file")


@pytest.fixture
def ct_stack(alliance: Alliance, node: Receiver, data: Path, tmp_path: Path) -> tuple[str, list[Path]]:
    """A 20-slice CT made from the three real JANCT000 slices, sent by Dongguan's CT through the node, complete
    and with its reading task."""
    sources = sorted((data / "ct" / "series_JANCT000_3slice").glob("*.dcm"))
    paths = series_from(sources, tmp_path / "ct", CT_SLICES)
    statuses = send(node.config.dicom.port, "DG_CT", *paths)
    assert [status.Status for status in statuses] == [0] * CT_SLICES
    study_uid = dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
    alliance.complete(study_uid)
    return study_uid, paths


def browser_at_service_time(watched: WatchedPage, alliance: Alliance) -> Page:
    """The watched page with its clock at the service's (injected) time, so countdowns agree."""
    watched.page.clock.set_fixed_time(alliance.now)
    return watched.page


# --- the worklist and its claim ---------------------------------------------------------------------------


def test_a_ct_reader_claims_the_task_from_the_worklist_and_the_viewer_opens_the_study(
    alliance: Alliance, ct_stack: tuple[str, list[Path]], live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    study_uid, _ = ct_stack
    task = alliance.task(study_uid)
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ct", live_server.passwords["reader-ct"])
    expect(page).to_have_url(f"{live_server.url}/worklist")
    expect(page.locator("h1")).to_have_text("工作列表")

    row = page.locator(f"#task-{task.id}")
    expect(row).to_contain_text("JANCT000")  # the patient
    expect(row.locator("td").nth(3)).to_have_text("CT")
    expect(row).to_contain_text("等待阅片")
    countdown = row.locator(".left")
    expect(countdown).to_have_text(re.compile(r"^2[34] 小时 \d+ 分$"))  # a routine study: 24 hours to report
    expect(countdown).to_have_class(re.compile(r"\blater\b"))
    assert countdown.evaluate("(node) => getComputedStyle(node).backgroundColor") == LATER
    watched.screenshot("worklist")

    row.get_by_role("button", name="领取并打开").click()  # one click: claimed, and the viewer opens
    expect(page).to_have_url(f"{live_server.url}/studies/{study_uid}")
    shown = wait_until_shown(page, slice="1")
    assert looks_like_an_image(shown), shown
    expect(page.locator("#slice-label")).to_have_text(f"1 / {CT_SLICES}")
    expect(page.locator("#patient-line")).to_contain_text("JANCT000")
    expect(page.locator("#series-list button")).to_have_count(1)
    expect(page.locator("#task-line")).to_contain_text("影像医师 李强 正在阅片")  # the claim is this reader's
    assert alliance.task(study_uid).state == "claimed"
    watched.screenshot("viewer-opened")
    watched.assert_clean(IGNORED)


# --- the CT viewer -----------------------------------------------------------------------------------------


def test_the_ct_viewer_scrolls_windows_inverts_and_measures_a_length_in_millimetres(
    alliance: Alliance, ct_stack: tuple[str, list[Path]], live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    study_uid, paths = ct_stack
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ct", live_server.passwords["reader-ct"], f"/studies/{study_uid}")
    canvas, label = page.locator("#viewport"), page.locator("#slice-label")

    # slices 1, 2 and 3 are the three different real slices; the series repeats them
    page.wait_for_function(SERIES_LOADED, arg=CT_SLICES)  # every preview is in and the layout is settled
    first = wait_until_shown(page, slice="1", window="40,400", invert="false", zoom="1")
    assert looks_like_an_image(first), first
    box = canvas.bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    page.mouse.wheel(0, 100)  # one notch down: the next image
    expect(label).to_have_text(f"2 / {CT_SLICES}")
    second = wait_until_shown(page, slice="2")
    page.keyboard.press("ArrowDown")
    expect(label).to_have_text(f"3 / {CT_SLICES}")
    third = wait_until_shown(page, slice="3")
    by_source = [first["hash"], second["hash"], third["hash"]]
    assert len(set(by_source)) == 3, "scrolling did not change the image"
    assert all(looks_like_an_image(shown) for shown in (second, third))
    page.mouse.wheel(0, -100)
    expect(label).to_have_text(f"2 / {CT_SLICES}")
    assert wait_until_shown(page, slice="2")["hash"] == second["hash"]

    slider = page.locator("#slice-slider")
    slider_box = slider.bounding_box()
    page.mouse.click(slider_box["x"] + slider_box["width"] * 0.7, slider_box["y"] + slider_box["height"] / 2)
    number = int(slider.input_value())
    assert 10 < number < CT_SLICES
    expect(label).to_have_text(f"{number} / {CT_SLICES}")
    moved = wait_until_shown(page, slice=str(number))
    assert moved["hash"] == by_source[(number - 1) % 3]  # the very slice the slider points at
    watched.screenshot("viewer-slice")

    page.locator('[data-preset="lung"]').click()
    expect(page.locator('[data-preset="lung"]')).to_have_attribute("aria-pressed", "true")
    lung = wait_until_shown(page, slice=str(number), window="-600,1500")  # rendered anew by the server
    assert lung["hash"] != moved["hash"] and abs(lung["mean"] - moved["mean"]) > 5, (moved, lung)
    expect(page.locator("#corner-window")).to_contain_text("1500")
    watched.screenshot("viewer-lung")

    # window/level drag: right is wider, down is a higher level, at width/200 per pixel
    expect(page.locator("#tool-wl")).to_have_attribute("aria-pressed", "true")
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] + 40, centre[1] + 20, steps=4)
    page.mouse.up()
    dragged = wait_until_shown(page, window=f"{-600 + 20 * 7.5:.0f},{1500 + 40 * 7.5:.0f}")
    assert dragged["hash"] != lung["hash"]

    page.locator("#invert").click()
    inverted = wait_until_shown(page, invert="true")
    expect(page.locator("#invert")).to_have_attribute("aria-pressed", "true")
    assert inverted["mean"] == pytest.approx(255 - dragged["mean"], abs=3)

    # a length: the image fills the canvas at "fit" (zoom 1), so one image pixel is `scale` canvas pixels
    ds = dcmread(paths[number - 1], stop_before_pixels=True)
    row_mm, col_mm = (float(value) for value in ds.PixelSpacing)
    assert page.evaluate("devicePixelRatio") == 1
    width, height = canvas.evaluate("(node) => [node.width, node.height]")
    scale = min(width / ds.Columns, height / (ds.Rows * row_mm / col_mm))
    page.locator("#tool-length").click()
    start, end = (centre[0] - 150, centre[1] - 40), (centre[0] + 120, centre[1] + 60)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()
    measured = page.locator("#measurements li")
    expect(measured).to_have_count(1)
    expect(measured).to_contain_text("像素间距 PixelSpacing")
    text = measured.inner_text()
    found = re.search(r"长度 ([\d.]+) mm", text)
    assert found, text
    expected = math.hypot((end[0] - start[0]) / scale * col_mm, (end[1] - start[1]) / scale * row_mm)
    assert float(found.group(1)) == pytest.approx(expected, rel=0.01), (text, expected)
    expect(measured).to_contain_text(f"第 {number} 幅")  # the image it was made on
    watched.screenshot("viewer-measured")

    page.locator("#reset").click()
    back = wait_until_shown(page, window="40,400", invert="false", zoom="1")
    assert back["hash"] == moved["hash"]  # the image's own window again, not inverted
    watched.assert_clean(IGNORED)


# --- the ECG viewer ----------------------------------------------------------------------------------------


def test_the_ecg_is_drawn_on_millimetre_paper_at_the_chosen_speed_and_gain_with_the_devices_measurements(
    alliance: Alliance, config: Config, sessions: sessionmaker, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    study_uid = alliance.study(ECG, "LIJIA_ECG", PatientName="Li^Jia").study_uid
    viewer_jobs.configure(config, sessions)
    viewer_jobs.on_study(0, "study.complete", {"study_uid": study_uid})  # the worker measures the ECG
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ecg", live_server.passwords["reader-ecg"], f"/studies/{study_uid}")

    svg = page.locator("#ecg-svg")
    expect(svg).to_have_attribute("data-speed", "25")
    expect(svg).to_have_attribute("data-gain", "10")
    leads = svg.locator("path[data-lead]")
    expect(leads).to_have_count(13)  # twelve leads and the lead II rhythm strip
    assert set(leads.evaluate_all("(paths) => paths.map((p) => p.dataset.lead)")) == {
        "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "II-rhythm"}
    assert all(len(d) > 1000 for d in leads.evaluate_all("(paths) => paths.map((p) => p.getAttribute('d'))"))
    assert svg.locator(".grid-small").evaluate("(node) => getComputedStyle(node).stroke") == "rgb(247, 196, 207)"
    assert svg.locator(".grid-large").evaluate("(node) => getComputedStyle(node).stroke") == "rgb(224, 105, 127)"
    expect(page.locator("#patient-line")).to_contain_text("Li Jia")

    # the device's measurements from the file, and Telerad's own beside them
    panel = page.locator("#ecg-measurements")
    expect(panel).to_have_attribute("data-computed", "done")
    ds = dcmread(ECG)
    for key, meaning, label in (("pr_ms", "PR Interval", "PR 间期"), ("qrs_ms", "QRS Duration", "QRS 时限"),
                                ("qt_ms", "QT Interval", "QT 间期")):
        measurement = panel.locator(f'tr[data-measurement="{key}"]')
        expect(measurement.locator("th")).to_have_text(f"{label} (ms)")
        expect(measurement.locator("td.device")).to_have_text(f"{device_value(ds, meaning):.0f}")
        expect(measurement.locator("td.computed")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#ecg-statements")).to_contain_text("RITMO SINUSALE")
    watched.screenshot("ecg-25mm")

    v6 = svg.locator('path[data-lead="V6"]')

    def drawn() -> tuple[dict[str, float], dict[str, float]]:
        """V6 on paper (mm, the SVG's units) and on the screen (CSS pixels)."""
        paper = v6.evaluate("(path) => { const box = path.getBBox(); return {width: box.width, height: box.height}; }")
        return paper, v6.bounding_box()

    paper_25, screen_25 = drawn()
    assert paper_25["width"] == pytest.approx(2.5 * 25, rel=0.01)  # a 2.5 s column at 25 mm/s
    page.locator("#ecg-speed").select_option("50")
    expect(svg).to_have_attribute("data-speed", "50")
    paper_50, screen_50 = drawn()
    assert paper_50["width"] == pytest.approx(2 * paper_25["width"], rel=0.01)
    assert screen_50["width"] == pytest.approx(2 * screen_25["width"], rel=0.03)
    assert paper_50["height"] == pytest.approx(paper_25["height"], rel=0.01)
    watched.screenshot("ecg-50mm")

    page.locator("#ecg-gain").select_option("20")
    expect(svg).to_have_attribute("data-gain", "20")
    paper_20, screen_20 = drawn()
    assert paper_20["height"] == pytest.approx(2 * paper_50["height"], rel=0.01)
    assert screen_20["height"] == pytest.approx(2 * screen_50["height"], rel=0.03)
    assert paper_20["width"] == pytest.approx(paper_50["width"], rel=0.01)
    watched.screenshot("ecg-50mm-20mm-per-mv")
    watched.assert_clean(IGNORED)


# --- languages ---------------------------------------------------------------------------------------------


def test_the_header_link_switches_worklist_and_viewer_to_english_and_back_to_chinese(
    alliance: Alliance, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    task = alliance.study(CT, "DG_CT", PatientName="Zhao^Lei")
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ct", live_server.passwords["reader-ct"])
    switch, heading = page.locator("#lang-switch"), page.locator("h1")
    expect(heading).to_have_text("工作列表")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(switch).to_have_text("English")

    switch.click()
    expect(page).to_have_url(f"{live_server.url}/worklist?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(heading).to_have_text("Worklist")
    expect(page.locator("thead")).to_contain_text("Time left")
    row = page.locator(f"#task-{task.id}")
    expect(row).to_contain_text("Waiting for a reader")
    expect(row.locator(".left")).to_have_text(re.compile(r"^2[34] h \d+ min$"))
    expect(switch).to_have_text("中文")
    watched.screenshot("worklist-english")

    row.get_by_role("button", name="Claim and open").click()
    expect(page).to_have_url(f"{live_server.url}/studies/{task.study_uid}")  # English is remembered
    wait_until_shown(page, slice="1")
    expect(page.locator("#tool-wl")).to_have_text("Window/level")
    expect(page.locator('[data-preset="lung"]')).to_have_text("Lung")
    expect(page.locator("#measurements-empty")).to_contain_text("None yet")
    expect(page.locator("#patient-details")).to_contain_text("Name")  # written by the page's script
    watched.screenshot("viewer-english")

    switch.click()
    expect(page).to_have_url(f"{live_server.url}/studies/{task.study_uid}?lang=zh")
    wait_until_shown(page, slice="1")
    expect(page.locator("#tool-wl")).to_have_text("窗宽窗位")
    expect(page.locator('[data-preset="lung"]')).to_have_text("肺窗")
    expect(page.locator("#patient-details")).to_contain_text("姓名")
    expect(switch).to_have_text("English")
    watched.screenshot("viewer-chinese")

    page.get_by_role("link", name="工作列表").click()
    expect(heading).to_have_text("工作列表")
    expect(page.locator(f"#task-{task.id}")).to_contain_text("正在阅片")  # claimed, by this reader
    watched.assert_clean(IGNORED)


# --- the station page --------------------------------------------------------------------------------------


def test_a_station_sees_its_study_with_its_status_and_not_another_stations(
    alliance: Alliance, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    elsewhere = alliance.study(ECG, "XH_ECG", PatientName="Xi^He").study_uid
    waiting = alliance.study(CT, "DG_CT", PatientName="Dong^Guan").study_uid
    arriving = alliance.receive(CT, "DG_CT", PatientName="Wei^Dao", PatientID="DG-0002")  # still coming in
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "dongguan", live_server.passwords["dongguan"])
    expect(page).to_have_url(f"{live_server.url}/station")
    expect(page.locator("#studies-card h1")).to_contain_text("发送的检查")

    row = page.locator(f'#studies tr[data-study-uid="{waiting}"]')
    expect(row).to_contain_text("Dong Guan")
    expect(row.locator(".status")).to_have_text("等待阅片")
    expect(row.locator(".priority")).to_have_text("常规")
    expect(row.locator(".left")).to_have_text(re.compile(r"^2[34] 小时 \d+ 分$"))
    assert row.locator(".left").evaluate("(node) => getComputedStyle(node).backgroundColor") == LATER
    new = page.locator(f'#studies tr[data-study-uid="{arriving}"]')
    expect(new.locator(".status")).to_have_text("已接收")
    expect(new).to_contain_text("仍在接收")
    expect(new).to_contain_text("Wei Dao")
    expect(page.locator("#studies tr")).to_have_count(2)
    expect(page.locator(f'[data-study-uid="{elsewhere}"]')).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("Xi He")
    watched.screenshot("station")

    row.get_by_role("link", name="Dong Guan").click()  # the station opens what it sent
    expect(page).to_have_url(f"{live_server.url}/studies/{waiting}")
    assert looks_like_an_image(wait_until_shown(page, slice="1"))
    watched.screenshot("station-viewer")
    watched.assert_clean(IGNORED)
