"""The supervisors' dashboard page: the figures of a known history as a supervisor reads them, in Chinese and in
English; the period and filters; every table as CSV and all of them in one Excel workbook; the monthly county
report as PDF; and who may see it."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from alliance import CT, ECG, Alliance
from browser import LiveServer, WatchedPage, sign_in
from conftest import require
from history import History, made
from openpyxl import load_workbook
from web_client import text_of

from reading_queue import jobs


@pytest.fixture
def history(alliance: Alliance) -> dict[str, History]:
    """A: CT signed at 60 min and delivered at 62; C: a STAT CT claimed, breached at 31, signed at 45; D: an ECG
    from another station, signed at 90; E: an X-ray (DX) claimed at 10 and still open."""
    a = made(alliance, CT, "DG_CT")
    a.claim(10, "reader-ct"), a.open(15, "reader-ct"), a.sign(60, "reader-ct"), a.event(62, "report_delivered")
    c = made(alliance, CT, "DG_CT", "dongguan", "STAT")
    c.claim(5, "reader-ct"), c.claim(20, "reader-ct")
    c.at(31)
    jobs.sla_sweep()
    c.sign(45, "reader-ct")
    d = made(alliance, ECG, "XH_ECG")
    d.claim(30, "reader-ecg"), d.sign(90, "reader-ecg")
    e = made(alliance, CT, "DG_CT", Modality="DX")
    e.claim(10, "reader-ct")
    return {"A": a, "C": c, "D": d, "E": e}


def test_the_supervisor_reads_the_figures_of_the_period(history: dict[str, History], alliance: Alliance, browser) -> None:
    supervisor = browser("supervisor")
    assert supervisor.get("/").headers["Location"].endswith("/dashboard")
    page = supervisor.get("/dashboard")
    assert page.status_code == 200
    html, text = page.get_data(as_text=True), text_of(page)
    assert re.search(r'id="signed-count">3<', html)  # A, C, D
    assert 'id="signed-median">1 小时 00 分<' in html  # 45 60 90
    assert 'id="within-share">66.7%<' in html and 'id="breach-count">1<' in html
    assert "claimed by reader-ct but not signed in time" in text  # the breach's recorded reason
    assert "东关镇卫生院" in text and "西河镇卫生院" in text
    assert "报告时效与质控看板" in text and "实时情况" in text
    assert html.count("<svg") >= 2  # the trend and the per-site chart, drawn on the server
    english = text_of(supervisor.get("/dashboard", lang="en"))
    assert "Turnaround and quality dashboard" in english and "Right now" in english and "实时情况" not in english


def test_the_live_part_shows_the_overdue_study_and_who_holds_it(history: dict[str, History], alliance: Alliance,
                                                              browser) -> None:
    e = history["E"].task
    alliance.now = e.due_at + timedelta(minutes=30)
    page = browser("supervisor").get("/dashboard")
    html = page.get_data(as_text=True)
    row = re.search(rf'<tr data-task-id="{e.id}".*?</tr>', html, re.S)
    assert row is not None
    assert "影像医师 李强" in row.group(0) and "30 分钟" in row.group(0)
    assert 'id="backlog-overdue">1<' in html
    givers = re.search(r'<template id="readers-DX">(.*?)</template>', html, re.S).group(1)
    assert "影像医师 赵磊" in givers and "心电医师" not in givers  # only readers of X-ray may be given it


def test_a_bad_period_is_explained_and_the_last_30_days_shown(history: dict[str, History], browser) -> None:
    supervisor = browser("supervisor")
    assert "日期格式应为 2026-03-01。" in text_of(supervisor.get("/dashboard", **{"from": "yesterday"}))
    assert "结束日期早于开始日期。" in text_of(supervisor.get("/dashboard", **{"from": "2026-03-05", "to": "2026-03-01"}))
    empty = supervisor.get("/dashboard", **{"from": "2025-01-01", "to": "2025-01-31"}).get_data(as_text=True)
    assert 'id="signed-count">0<' in empty


def test_readers_and_stations_do_not_see_the_dashboard(history: dict[str, History], browser) -> None:
    assert browser("reader-ct").get("/dashboard").headers["Location"].endswith("/worklist")
    assert browser("dongguan").get("/dashboard").headers["Location"].endswith("/station")
    assert browser("reader-ct").get("/dashboard/export.xlsx").status_code == 403
    assert browser("dongguan").get("/dashboard/monthly.pdf", month="2026-03").status_code == 403


def test_each_table_exports_to_csv_and_all_to_excel(history: dict[str, History], browser) -> None:
    supervisor = browser("supervisor")
    response = supervisor.get("/dashboard/export.csv", table="by-site")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    dongguan = next(row for row in rows if "TS-DONGGUAN" in row)
    assert "2" in dongguan  # A and C signed there
    assert supervisor.get("/dashboard/export.csv", table="no-such-table").status_code == 404
    workbook = load_workbook(io.BytesIO(supervisor.get("/dashboard/export.xlsx").get_data()))
    assert len(workbook.sheetnames) >= 10
    cells = [cell for sheet in workbook for row in sheet.iter_rows(values_only=True) for cell in row]
    assert "TS-XIHE" in cells and "claimed by reader-ct but not signed in time" in cells


def test_the_monthly_report_is_a_pdf_naming_the_county_and_its_figures(history: dict[str, History], browser) -> None:
    response = browser("supervisor").get("/dashboard/monthly.pdf", month="2026-03")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.get_data().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        require("pdftotext (poppler-utils)")
        return
    text = subprocess.run(["pdftotext", "-", "-"], input=response.get_data(), capture_output=True, check=True).stdout
    shown = " ".join(text.decode().split())
    assert "县人民医院远程影像心电诊断中心" in shown and "2026-03" in shown and "东关镇卫生院" in shown
    assert browser("supervisor").get("/dashboard/monthly.pdf", month="March").status_code == 400


def test_a_supervisor_reassigns_an_overdue_study_and_takes_a_reader_off_duty_in_the_browser(
    history: dict[str, History], alliance: Alliance, live_server: LiveServer, watched: WatchedPage
) -> None:
    from playwright.sync_api import expect

    e = history["E"].task
    alliance.now = e.due_at + timedelta(minutes=30)
    page = watched.page
    page.clock.set_fixed_time(alliance.now)
    sign_in(page, live_server.url, "supervisor", live_server.passwords["supervisor"])
    expect(page).to_have_url(f"{live_server.url}/dashboard")
    expect(page.locator("h1")).to_have_text("报告时效与质控看板")
    expect(page.locator("#backlog-overdue")).to_have_text("1")
    expect(page.locator("#trend-chart svg")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    watched.screenshot("dashboard", full_page=True)

    row = page.locator(f'#overdue tr[data-task-id="{e.id}"]')
    row.locator('select[name="user"]').select_option("reader-ct2")
    row.locator('input[name="reason"]').fill("李医师下班")
    row.get_by_role("button", name="确定").click()
    expect(page.locator(f'#overdue tr[data-task-id="{e.id}"]')).to_contain_text("已分配给 影像医师 赵磊")
    assert alliance.task(e.study_uid).assignee_id is not None and alliance.task(e.study_uid).holder_id is None

    reader = page.locator('#readers tr[data-reader="reader-ct"]')
    reader.get_by_role("button", name="设为下岗").click()
    expect(page.locator('#readers tr[data-reader="reader-ct"]')).to_contain_text("不在岗")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")  # the reloaded page's script listens

    page.locator('#monthly-form select[name="month"]').select_option("2026-03")
    with page.expect_download() as download:
        page.get_by_role("button", name="下载 PDF").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
    watched.assert_clean()
