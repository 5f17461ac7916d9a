"""The report editor beside the images, in Debian's Chromium, as readers use it: a CT reader claims a study, picks
the CT chest template, writes findings and impression in Chinese (a phrase inserted at the cursor, a structured
field, the critical flag), sees the draft autosaved and persisted through the report API, signs with a wrong
password (refused, still a draft), then with the right one (final, signer and server time shown, nothing editable
any more); an ECG reader finds the template's rate and intervals prefilled from the measurements the ECG view
shows, in Chinese and in English.

Real files go in as stations send them (``tests/test_browser.py``'s patterns); the report API is
``reports/api.py``, the editor ``viewer/static/report.js``. Screenshots of each step are kept in the test's
``tmp_path`` (or ``$TELERAD_SCREENSHOTS``).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from alliance import CT, ECG, Alliance
from browser import LiveServer, Problem, WatchedPage, sign_in
from conftest import make_config
from dicom_files import send, series_from
from pacs_node.index import Instance, Series, Study
from pacs_node.node import Receiver
from telerad.config import Config
from viewer import jobs as viewer_jobs
from viewer.ecg_measurements import computed_for

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

# What a page may report without failing its test, each with its reason.
IGNORED = (
    r"/favicon\.ico$",  # the page frame declares no icon, so Chromium asks for /favicon.ico and gets a 404
)
CT_SLICES = 6
FINDINGS = "胸廓对称，气管居中。右肺上叶见一实性小结节，直径约5mm，边界清楚。右侧胸腔见气体密度影，肺组织受压约50%。"
IMPRESSION = "右肺上叶实性小结节；"
PHRASE = "右侧气胸，肺组织压缩约50%。"  # ct-chest.yaml's impression phrase "气胸"
SAVED = re.compile(r"^已保存 \d\d:\d\d$")


@pytest.fixture
def countersign_sites() -> tuple[str, ...]:
    """Reading centres where a junior reader's report waits for a senior's countersignature (none, unless a test
    parametrizes this)."""
    return ()


@pytest.fixture
def config(tmp_path: Path, database_url: str, countersign_sites: tuple[str, ...]) -> Config:
    """conftest's configuration, with ``reports.countersign_sites`` as the test asks."""
    return make_config(tmp_path, database_url, TELERAD_REPORTS_COUNTERSIGN_SITES=f"[{', '.join(countersign_sites)}]")


@pytest.fixture
def ct_stack(alliance: Alliance, node: Receiver, data: Path, tmp_path: Path) -> str:
    """A small CT made from the three real JANCT000 slices, sent by Dongguan's CT through the node, complete and
    with its reading task (as in test_browser.py); its study UID."""
    sources = sorted((data / "ct" / "series_JANCT000_3slice").glob("*.dcm"))
    paths = series_from(sources, tmp_path / "ct", CT_SLICES)
    statuses = send(node.config.dicom.port, "DG_CT", *paths)
    assert [status.Status for status in statuses] == [0] * CT_SLICES
    study_uid = dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
    alliance.complete(study_uid)
    return study_uid


def browser_at_service_time(watched: WatchedPage, alliance: Alliance) -> Page:
    """The watched page with its clock at the service's (injected) time, so times on the page agree."""
    watched.page.clock.set_fixed_time(alliance.now)
    return watched.page


def panel_shot(watched: WatchedPage, name: str) -> Path:
    """A picture of the whole report panel: it scrolls inside the side column, so a page shot shows only part; a
    window tall enough for all of it shows it whole (then the window is as before)."""
    page = watched.page
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 2400})
    path = watched.screenshots / f"{watched.prefix}-{name}.png"
    page.locator("#report").screenshot(path=str(path))
    watched.shots.append(path)
    page.set_viewport_size(size)
    return path


def report(alliance: Alliance, study_uid: str, who: str) -> dict[str, Any]:
    """The report as the API gives it to ``who``."""
    response = alliance.get(f"/studies/{study_uid}/report", who)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def wait_saved(page: Page) -> None:
    """Wait until everything typed is on the server (the panel says "saved" again, nothing pending)."""
    from playwright.sync_api import expect

    expect(page.locator("#report")).to_have_attribute("data-save", "saved")
    expect(page.locator("#report-save")).to_have_text(SAVED)


def wrong_password_problems(watched: WatchedPage, sign_url: str) -> list[Problem]:
    """What a refused signature leaves in the page's record: the 403 answer of the sign request (and Chromium's
    console line about it). Those are expected once; anything else is a real problem."""
    return [problem for problem in watched.problems if problem.url == sign_url and "403" in problem.text]


def field(page: Page, field_id: str) -> Locator:
    return page.locator(f"#report-field-{field_id}")


# --- the CT reader writes and signs ---------------------------------------------------------------------------


def test_a_ct_reader_writes_the_report_beside_the_images_autosaves_and_signs_it(
    alliance: Alliance, ct_stack: str, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    study_uid = ct_stack
    task = alliance.task(study_uid)
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ct", live_server.passwords["reader-ct"])
    page.locator(f"#task-{task.id}").get_by_role("button", name="领取并打开").click()
    expect(page).to_have_url(f"{live_server.url}/studies/{study_uid}")
    expect(page.locator("#viewport")).to_have_attribute("data-loaded", "full")  # the images are there

    # the panel sits at the top of the side column, beside the images, preselected by the API's choice
    panel = page.locator("#report")
    expect(panel).to_have_attribute("data-state", "draft")
    assert page.locator("#side > *").first.get_attribute("id") == "report"
    proposed = report(alliance, study_uid, "reader-ct")
    assert proposed["state"] == "draft"
    template = page.locator("#report-template")
    expect(template).to_have_value(proposed["template_id"])
    expect(page.locator("#report-state")).to_have_text("草稿")
    expect(page.locator("#report-findings")).to_have_value(proposed["findings"])
    watched.screenshot("report-opened")

    # the CT chest template: its fields in Chinese, its default text, saved at once
    template.select_option("ct-chest")
    fields = page.locator("#report-fields")
    expect(fields.locator('label[for="report-field-lungs"]')).to_have_text("肺野")
    expect(fields.locator('label[for="report-field-nodule_size"]')).to_have_text("最大结节直径")
    expect(field(page, "technique")).to_have_value("胸部CT平扫，肺窗及纵隔窗观察。")  # not the head template's
    expect(field(page, "lungs")).to_have_value("normal")
    expect(field(page, "lungs").locator("option:checked")).to_have_text("未见实质性病变")
    expect(page.locator("#report-findings")).to_have_value(re.compile("双肺纹理清晰"))  # ct-chest.yaml's default text
    wait_saved(page)
    assert report(alliance, study_uid, "reader-ct")["template_id"] == "ct-chest"

    # findings, impression, a phrase at the cursor, structured fields, the critical flag with its category
    page.locator("#report-findings").fill(FINDINGS)
    expect(panel).to_have_attribute("data-save", "dirty")
    expect(page.locator("#report-save")).to_have_text("尚未保存")
    impression = page.locator("#report-impression")
    impression.fill(IMPRESSION)
    impression.press("End")
    phrase = page.locator('#report-phrase optgroup[label="诊断意见"] option', has_text="气胸")
    page.locator("#report-phrase").select_option(phrase.get_attribute("value"))
    expect(impression).to_have_value(IMPRESSION + PHRASE)
    field(page, "lungs").select_option("nodule")
    field(page, "nodule_size").fill("5")
    field(page, "pleura").select_option("pneumothorax")
    page.locator("#report-critical").check()
    expect(page.locator("#report-critical-hint")).to_be_visible()  # not saved as critical until it has a category
    page.locator("#report-critical-category").select_option("pneumothorax")
    expect(page.locator("#report-critical-hint")).to_be_hidden()
    wait_saved(page)
    watched.screenshot("report-saved")
    panel_shot(watched, "panel-saved")

    saved = report(alliance, study_uid, "reader-ct")
    assert saved["state"] == "draft" and saved["template_id"] == "ct-chest"
    assert saved["findings"] == FINDINGS
    assert saved["impression"] == IMPRESSION + PHRASE
    assert saved["fields"]["lungs"] == "nodule" and saved["fields"]["nodule_size"] == 5
    assert saved["fields"]["pleura"] == "pneumothorax"
    assert saved["critical"] is True and saved["critical_category"] == "pneumothorax"
    revision = saved["revision"]

    # a wrong password: refused, said precisely, still a draft
    page.locator("#report-sign").click()
    dialog = page.locator("#sign-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("input")).to_have_count(1)  # the password, nothing else
    expect(page.locator("#sign-password")).to_be_focused()
    page.locator("#sign-password").fill("not-my-password")
    page.locator("#sign-confirm").click()
    expect(page.locator("#sign-error")).to_have_text(re.compile("^密码错误"))
    expect(dialog).to_be_visible()
    expect(panel).to_have_attribute("data-state", "draft")
    after_wrong = report(alliance, study_uid, "reader-ct")
    assert after_wrong["state"] == "draft" and after_wrong["revision"] == revision and not after_wrong["signatures"]
    watched.screenshot("sign-wrong-password")

    # the right password: final, with signer and the server's time; nothing can be edited any more
    page.locator("#sign-password").fill(live_server.passwords["reader-ct"])
    page.locator("#sign-confirm").click()
    expect(dialog).to_be_hidden()
    expect(panel).to_have_attribute("data-state", "final")
    expect(page.locator("#report-state")).to_have_text("已签发")
    signed = report(alliance, study_uid, "reader-ct")
    assert signed["state"] == "final"
    [signature] = signed["signatures"]
    shown = page.locator("#report-signatures li")
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text("影像医师 李强")
    expect(shown).to_contain_text("报告医师")
    local = alliance.now.astimezone(ZoneInfo(alliance.config.reading.timezone))
    expect(shown.locator("time")).to_have_text(local.strftime("%Y-%m-%d %H:%M"))
    assert signature_time(signature) == alliance.now
    for text in (page.locator("#report-findings"), page.locator("#report-impression"), field(page, "nodule_size")):
        expect(text).not_to_be_editable()
    for control in (page.locator("#report-template"), field(page, "lungs"), page.locator("#report-critical")):
        expect(control).to_be_disabled()
    expect(page.locator("#report-sign")).to_be_hidden()
    expect(page.locator("#report-phrase")).to_be_hidden()
    expect(page.locator("#report-findings")).to_have_value(FINDINGS)
    pdf = page.locator("#report-pdf")
    expect(pdf).to_be_visible()
    expect(pdf).to_have_text("查看 / 打印 PDF")
    answer = page.request.get(pdf.evaluate("(link) => link.href"))  # with the session of the page
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/pdf")
    assert answer.body().startswith(b"%PDF-")
    watched.screenshot("report-signed")
    panel_shot(watched, "panel-signed")

    # an addendum: signed with the password, shown beside the untouched original
    page.locator("#report-addendum-text").fill("补充：建议3个月后复查胸部CT。")
    page.locator("#report-addendum-sign").click()
    expect(page.locator("#sign-title")).to_have_text("签署补充报告")
    page.locator("#sign-password").fill(live_server.passwords["reader-ct"])
    page.locator("#sign-confirm").click()
    expect(dialog).to_be_hidden()
    expect(panel).to_have_attribute("data-state", "amended")
    expect(page.locator("#report-state")).to_have_text("已签发，含补充报告")
    addendum = page.locator("#report-addenda li")
    expect(addendum).to_have_count(1)
    expect(addendum).to_contain_text("补充：建议3个月后复查胸部CT。")
    expect(addendum).to_contain_text("影像医师 李强 签名于 " + local.strftime("%Y-%m-%d %H:%M"))
    expect(shown).to_have_count(1)  # the original's signature stays as it was
    expect(page.locator("#report-findings")).to_have_value(FINDINGS)
    amended = report(alliance, study_uid, "reader-ct")
    assert amended["state"] == "amended" and amended["findings"] == FINDINGS
    assert [part["text"] for part in amended["addenda"]] == ["补充：建议3个月后复查胸部CT。"]
    panel_shot(watched, "panel-amended")

    sign_url = f"{live_server.url}/api/v1/studies/{study_uid}/report/sign"
    refused = wrong_password_problems(watched, sign_url)
    assert 1 <= len(refused) <= 2 and any(problem.kind == "http" for problem in refused), watched.problems
    watched.problems = [problem for problem in watched.problems if problem not in refused]
    watched.assert_clean(IGNORED)


def signature_time(signature: dict[str, Any]) -> datetime:
    """A signature's time as the API gives it, as an aware datetime."""
    return datetime.fromisoformat(signature.get("time") or signature["signed_at"])


# --- the ECG reader finds the measurements in the template ------------------------------------------------------


def ecg_study(alliance: Alliance, config: Config, sessions: sessionmaker) -> tuple[str, dict[str, int]]:
    """A real 12-lead ECG from Lijia, complete, measured by the worker; its Telerad measurements, rounded."""
    study_uid = alliance.study(ECG, "LIJIA_ECG", PatientName="Li^Jia").study_uid
    viewer_jobs.configure(config, sessions)
    viewer_jobs.on_study(0, "study.complete", {"study_uid": study_uid})
    with sessions() as session:
        sop_uid = session.scalar(
            select(Instance.sop_instance_uid).join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id).where(Study.study_uid == study_uid)
        )
        row = computed_for(session, sop_uid)
        assert row is not None and row.error is None
        measured = {name: round(getattr(row, name)) for name in ("heart_rate", "pr_ms", "qrs_ms", "qt_ms")}
    return study_uid, measured


def test_an_ecg_reader_finds_rate_and_intervals_prefilled_from_the_measurements(
    alliance: Alliance, config: Config, sessions: sessionmaker, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    study_uid, measured = ecg_study(alliance, config, sessions)
    claimed = alliance.post(f"/tasks/{alliance.task(study_uid).id}/claim", "reader-ecg")
    assert claimed.status_code == 200, claimed.get_data(as_text=True)
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ecg", live_server.passwords["reader-ecg"], f"/studies/{study_uid}")

    expect(page.locator("#ecg-svg path[data-lead]")).to_have_count(13)
    panel = page.locator("#report")
    expect(panel).to_have_attribute("data-state", "draft")
    assert page.locator(".ecg-workspace aside > *").first.get_attribute("id") == "report"
    expect(page.locator("#report-template")).to_have_value("ecg-12lead")
    expect(page.locator("#report-template option")).to_have_count(1)  # only templates made for an ECG
    table = page.locator("#ecg-measurements")
    expect(table).to_have_attribute("data-computed", "done")
    for field_id, key, label in (("heart_rate", "heart_rate", "心率"), ("pr", "pr_ms", "PR间期"),
                                 ("qrs", "qrs_ms", "QRS时限"), ("qt", "qt_ms", "QT间期")):
        expect(page.locator(f'label[for="report-field-{field_id}"]')).to_have_text(label)
        expect(field(page, field_id)).to_have_value(str(measured[key]))
        # the same figure the measurements table beside it shows as Telerad's own
        expect(table.locator(f'tr[data-measurement="{key}"] td.computed')).to_have_text(str(measured[key]))
    expect(page.locator("#report-field-heart_rate + .unit")).to_have_text("次/分")
    expect(page.locator("#report-prefill")).to_have_text("心率、间期和电轴已按 Telerad 自动测量结果预填。")
    expect(field(page, "rhythm").locator("option:checked")).to_have_text("窦性心律")
    expect(page.locator('label[for="report-findings"]')).to_have_text("心电图特征")  # the template's own section names
    expect(page.locator('label[for="report-impression"]')).to_have_text("心电图诊断")
    expect(page.locator("#report-impression")).to_have_value("窦性心律；正常心电图。")
    watched.screenshot("ecg-report")
    panel_shot(watched, "ecg-panel")

    # a phrase goes in at the cursor, and the draft saves itself, prefilled figures included
    impression = page.locator("#report-impression")
    impression.fill("窦性心律；")
    impression.press("End")
    phrase = page.locator('#report-phrase optgroup[label="心电图诊断"] option', has_text="一度房室传导阻滞")
    page.locator("#report-phrase").select_option(phrase.get_attribute("value"))
    expect(impression).to_have_value("窦性心律；一度房室传导阻滞。")
    wait_saved(page)
    saved = report(alliance, study_uid, "reader-ecg")
    assert saved["impression"] == "窦性心律；一度房室传导阻滞。"
    assert {key: saved["fields"][field_id] for field_id, key in
            (("heart_rate", "heart_rate"), ("pr", "pr_ms"), ("qrs", "qrs_ms"), ("qt", "qt_ms"))} == measured

    # saved meanwhile from another window: the editor's next save is stale (409), it shows the server's version
    elsewhere = "另一窗口写入的所见。"
    other_window = alliance.client.put(
        f"/api/v1/studies/{study_uid}/report", json={"revision": saved["revision"], "findings": elsewhere},
        headers={"Authorization": f"Bearer {alliance.token('reader-ecg')}"},
    )
    assert other_window.status_code == 200, other_window.get_data(as_text=True)
    page.locator("#report-findings").fill("这段文字晚于另一窗口。")
    notice = page.locator("#report-notice")
    expect(notice).to_contain_text(f"报告已在别处被修改（第 {saved['revision'] + 1} 版）")
    expect(notice).to_contain_text("您最后的修改没有保存。")
    expect(page.locator("#report-findings")).to_have_value(elsewhere)
    expect(panel).to_have_attribute("data-state", "draft")
    watched.screenshot("stale-revision")
    page.locator("#report-findings").fill(elsewhere + "窦性心律。")  # writing goes on from the server's version
    wait_saved(page)
    assert report(alliance, study_uid, "reader-ecg")["findings"] == elsewhere + "窦性心律。"
    report_url = f"{live_server.url}/api/v1/studies/{study_uid}/report"
    stale = [problem for problem in watched.problems if problem.url == report_url and "409" in problem.text]
    assert stale and any(problem.text == "PUT 409" for problem in stale), watched.problems
    watched.problems = [problem for problem in watched.problems if problem not in stale]

    # in English on request: the template's English labels, the editor's own words
    page.goto(f"{live_server.url}/studies/{study_uid}?lang=en")
    expect(page.locator("#report-title")).to_have_text("Report")
    expect(page.locator('label[for="report-field-heart_rate"]')).to_have_text("Heart rate")
    expect(page.locator('label[for="report-field-qrs"]')).to_have_text("QRS duration")
    expect(page.locator("#report-field-heart_rate + .unit")).to_have_text("/min")
    expect(page.locator("#report-template option:checked")).to_have_text("12-lead ECG")
    expect(page.locator('label[for="report-impression"]')).to_have_text("Conclusion")
    expect(page.locator("#report-save")).to_have_text(re.compile(r"^Saved \d\d:\d\d$"))
    expect(page.locator("#report-sign")).to_have_text("Sign the report…")
    expect(impression).to_have_value("窦性心律；一度房室传导阻滞。")  # the report itself stays as written
    watched.screenshot("ecg-report-english")
    watched.assert_clean(IGNORED)


@pytest.mark.parametrize("countersign_sites", [("CNTY",)])
def test_a_junior_readers_report_waits_for_the_seniors_countersignature(
    alliance: Alliance, config: Config, sessions: sessionmaker, live_server: LiveServer, watched: WatchedPage
) -> None:
    """At a centre that wants countersignatures, the junior ECG reader's signature makes the report preliminary;
    the senior opens it, sees the Countersign button (the junior did not), countersigns: final, both signed."""
    from playwright.sync_api import expect

    study_uid, _measured = ecg_study(alliance, config, sessions)
    claimed = alliance.post(f"/tasks/{alliance.task(study_uid).id}/claim", "reader-ecg")
    assert claimed.status_code == 200, claimed.get_data(as_text=True)
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "reader-ecg", live_server.passwords["reader-ecg"], f"/studies/{study_uid}")
    panel = page.locator("#report")
    expect(panel).to_have_attribute("data-state", "draft")
    page.locator("#report-impression").fill("窦性心律；正常心电图。")
    wait_saved(page)
    page.locator("#report-sign").click()
    page.locator("#sign-password").fill(live_server.passwords["reader-ecg"])
    page.locator("#sign-confirm").click()
    expect(panel).to_have_attribute("data-state", "preliminary")
    expect(page.locator("#report-state")).to_have_text("初步报告：等待审核签名")
    expect(page.locator("#report-signatures li")).to_have_text(re.compile("^报告医师 心电医师 张敏 "))
    expect(page.locator("#report-countersign")).to_be_hidden()  # not the author's to countersign
    expect(page.locator("#report-impression")).not_to_be_editable()
    panel_shot(watched, "panel-preliminary")

    page.get_by_role("button", name="退出").click()
    expect(page.locator("#password")).to_be_visible()  # the sign-in page has loaded: nothing of it is cut short
    page.wait_for_load_state()
    sign_in(page, live_server.url, "senior-ecg", live_server.passwords["senior-ecg"], f"/studies/{study_uid}")
    expect(panel).to_have_attribute("data-state", "preliminary")
    countersign = page.locator("#report-countersign")
    expect(countersign).to_be_visible()
    countersign.click()
    expect(page.locator("#sign-title")).to_have_text("审核签名")
    page.locator("#sign-password").fill(live_server.passwords["senior-ecg"])
    page.locator("#sign-confirm").click()
    expect(page.locator("#sign-dialog")).to_be_hidden()
    expect(panel).to_have_attribute("data-state", "final")
    signatures = page.locator("#report-signatures li")
    expect(signatures).to_have_count(2)
    expect(signatures.nth(0)).to_contain_text("报告医师 心电医师 张敏")
    expect(signatures.nth(1)).to_contain_text("审核医师 心电主任 孙红")
    expect(countersign).to_be_hidden()
    signed = report(alliance, study_uid, "senior-ecg")
    assert signed["state"] == "final" and [s["role"] for s in signed["signatures"]] == ["author", "countersign"]
    panel_shot(watched, "panel-countersigned")
    watched.assert_clean(IGNORED)


def test_a_reader_without_the_claim_sees_the_report_read_only(
    alliance: Alliance, config: Config, sessions: sessionmaker, live_server: LiveServer, watched: WatchedPage
) -> None:
    """Another ECG reader (not holding the task) opens the study: the panel says it is read only as soon as the
    API refuses the write, and keeps what is on the server."""
    from playwright.sync_api import expect

    study_uid, _measured = ecg_study(alliance, config, sessions)
    claimed = alliance.post(f"/tasks/{alliance.task(study_uid).id}/claim", "reader-ecg")
    assert claimed.status_code == 200, claimed.get_data(as_text=True)
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "senior-ecg", live_server.passwords["senior-ecg"], f"/studies/{study_uid}")
    panel = page.locator("#report")
    expect(panel).to_have_attribute("data-state", "draft")
    findings = page.locator("#report-findings")
    if findings.is_editable():  # the API did not say beforehand: the first autosave finds out
        findings.fill("不应保存的文字")
        expect(page.locator("#report-error")).to_be_visible()
    expect(findings).not_to_be_editable()
    expect(page.locator("#report-save")).to_have_text("只读：您无权书写此报告。")
    expect(page.locator("#report-sign")).to_be_hidden()
    assert "不应保存" not in str(alliance.get(f"/studies/{study_uid}/report", "reader-ecg").json)
    watched.screenshot("report-read-only")
    report_url = f"{live_server.url}/api/v1/studies/{study_uid}/report"
    refused = [problem for problem in watched.problems if problem.url == report_url and "403" in problem.text]
    watched.problems = [problem for problem in watched.problems if problem not in refused]
    watched.assert_clean(IGNORED)


def test_a_station_opening_what_it_sent_gets_no_report_editor(
    alliance: Alliance, live_server: LiveServer, watched: WatchedPage
) -> None:
    """A station reads its signed reports on its own page; its viewer has no editor and asks nothing of the API."""
    from playwright.sync_api import expect

    study_uid = alliance.study(CT, "DG_CT", PatientName="Dong^Guan").study_uid
    page = browser_at_service_time(watched, alliance)
    sign_in(page, live_server.url, "dongguan", live_server.passwords["dongguan"], f"/studies/{study_uid}")
    expect(page.locator("#viewport")).to_have_attribute("data-loaded", "full")
    expect(page.locator("#patient-line")).to_contain_text("Dong Guan")
    expect(page.locator("#report")).to_have_count(0)
    expect(page.locator("#side .side-card").first).to_be_visible()  # the study's details lead the side column
    watched.screenshot("station-viewer")
    watched.assert_clean(IGNORED)
