"""The dashboard's outputs: the SVG charts, the CSV and Excel exports and the county's monthly PDF report, on a
known figures dict, and ``telerad report monthly`` on a small real history."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alliance import CT, ECG, Alliance
from click.testing import CliRunner
from conftest import ROOT
from history import made
from openpyxl import load_workbook

from reading_queue import jobs
from reports.monthly import BREACHES_LISTED, monthly_pdf
from telerad.cli import main
from viewer import charts
from viewer.export import (
    Table,
    csv_bytes,
    default_labels,
    labels_in,
    live_tables,
    scorecard_table,
    turnaround_tables,
    xlsx_bytes,
)

SVG = "{http://www.w3.org/2000/svg}"
ZH, EN = labels_in("zh"), labels_in("en")
HOSTILE = 'Evil</text><script>alert("x")</script>&\x01 =cmd'
CENTRE = "县人民医院远程影像心电诊断中心"


def _stats(count: int, median: float | None, share: float | None | bool = False) -> dict[str, Any]:
    stats = {"count": count, "median_minutes": median, "p90_minutes": None if median is None else median * 2,
             "max_minutes": None if median is None else median * 3}
    if share is not False:
        stats["within_deadline_share"] = share
    return stats


def _group(key: str, name: str, name_en: str, median: float | None, share: float | None) -> dict[str, Any]:
    count = 0 if median is None else 10
    return {"key": key, "name": name, "name_en": name_en, "assigned": _stats(count, 5), "opened": _stats(count, 20),
            "signed": _stats(count, median, share), "delivered": _stats(count, None if median is None else median + 5)}


def _breach(number: int, reason: str) -> dict[str, Any]:
    return {"task_id": number, "study_uid": f"1.2.826.0.1.{number}", "site": "TS-XIHE", "site_name": "西河镇卫生院",
            "modality": "CT", "priority": "STAT", "opened_at": "2026-03-02T01:00:00+00:00",
            "due_at": "2026-03-02T01:30:00+00:00", "breached_at": "2026-03-02T01:30:00+00:00", "reason": reason,
            "reader": "reader-ct", "signed_at": None}


def known_figures(breaches: int = 2) -> dict[str, Any]:
    """Figures as :func:`reading_queue.turnaround.figures` gives them, for March 2026 in Shanghai."""
    return {
        "timezone": "Asia/Shanghai",
        "intervals": {"assigned": _stats(130, 5.5), "opened": _stats(129, 21.0),
                      "signed": {**_stats(128, 42.0, 0.9375), "p90_minutes": 95.5},
                      "delivered": {**_stats(120, 50.25), "p90_minutes": 110.0}},
        "groups": {
            "site": [_group("TS-DONGGUAN", "东关镇卫生院", "Dongguan Township", 60.0, 0.9),
                     _group("TS-XIHE", "西河镇卫生院", "Xihe Township", 30.0, 1.0),
                     _group("VIL-LIJIA", "李家村卫生室", "Lijia Village", None, None)],
            "modality": [_group("CT", "CT", "CT", 40.0, 0.95), _group("ECG", "ECG", "ECG", 20.0, 1.0)],
            "priority": [_group("STAT", "STAT", "STAT", 15.0, 0.5), _group("ROUTINE", "ROUTINE", "ROUTINE", 45.0, 1.0)],
            "reader": [_group("reader-ct", "影像医师 李强", "reader-ct", 40.0, 0.95)],
        },
        "daily": [{"date": f"2026-03-{day:02d}", **_stats(day * 3, 30.0 + day * 10, 0.9)} for day in (1, 2, 3, 5, 8)],
        "breaches": {"count": breaches,
                     "items": [_breach(number, "=HYPERLINK(\"http://x\")" if number == 1 else "网络中断, \"夜班\"\n无人")
                               for number in range(1, breaches + 1)]},
        "backlog": {"overdue": 0, "under_1h": 0, "under_4h": 0, "under_24h": 0, "later": 0},
    }


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc").text
    named = {root.find(f"{SVG}title").get("id"), root.find(f"{SVG}desc").get("id")}
    assert set(root.get("aria-labelledby").split()) == named
    return root


def _bars(root: ET.Element, kind: str) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class", "").split()[:2] == ["bar", kind]]


def test_labels_follow_the_request_language_and_come_from_the_catalogue(alliance: Alliance) -> None:
    assert ZH["median"] == "中位用时" and EN["median"] == "Median time" and ZH.keys() == EN.keys()
    assert all(ZH[key] != EN[key] for key in ("signed", "with_unit", "title_site", "page", "no_data"))
    for language, expected in (("en", EN), ("zh", ZH)):
        with alliance.client.application.test_request_context(f"/dashboard?lang={language}"):
            assert default_labels() == expected
    assert (ZH["name_key"], EN["name_key"]) == ("name", "name_en")


# --- charts ------------------------------------------------------------------------------------------------------


def test_site_chart_has_a_bar_per_site_to_scale_slowest_first_with_late_sites_in_red() -> None:
    root = _svg(charts.site_chart(known_figures()["groups"]["site"], title="各站点", labels=ZH))
    medians = _bars(root, "median")
    assert [bar.get("data-site") for bar in medians] == ["TS-DONGGUAN", "TS-XIHE"]  # Lijia signed nothing
    assert [bar.get("data-site") for bar in _bars(root, "p90")] == ["TS-DONGGUAN", "TS-XIHE"]
    dongguan, xihe = (float(bar.get("width")) for bar in medians)
    assert dongguan == pytest.approx(2 * xihe)  # a median of 60 against 30 minutes
    assert float(_bars(root, "p90")[0].get("width")) == pytest.approx(2 * dongguan)
    assert "late" in medians[0].get("class") and medians[0].get("fill") != medians[1].get("fill")
    assert "late" not in medians[1].get("class")
    shares = {text.get("data-site"): text.text for text in root.iter(f"{SVG}text") if text.get("class") == "share"}
    assert shares == {"TS-DONGGUAN": "90.0%", "TS-XIHE": "100.0%"}
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert ["0", "25", "50", "75", "100", "125"] == [t for t in texts if t and t.isdigit()]  # round ticks
    assert "李家村卫生室" in texts and ZH["none_signed"] in texts
    assert "东关镇卫生院" in root.find(f"{SVG}desc").text


def test_site_chart_escapes_a_hostile_site_name_and_uses_hours_past_three_hours() -> None:
    sites = [_group("EVIL", HOSTILE, HOSTILE, 600.0, 1.0)]
    text = charts.site_chart(sites, title="<b>title</b>", labels=EN)
    root = _svg(text)
    assert not [element for element in root.iter() if element.tag.endswith("script") or element.tag.endswith("b")]
    assert "\x01" not in text
    assert any("</script>" in (element.text or "") for element in root.iter(f"{SVG}title"))
    assert root.find(f"{SVG}title").text == "<b>title</b>"
    caption = EN["with_unit"].format(measure=EN["signed"], unit=EN["hours"])
    assert caption in [t.text for t in root.iter(f"{SVG}text")]
    assert float(_bars(root, "p90")[0].get("width")) > 0


def test_trend_chart_bars_a_day_each_and_breaks_its_lines_on_days_without_signature() -> None:
    daily = known_figures()["daily"]
    root = _svg(charts.trend_chart(daily, title="每日趋势", labels=ZH))
    bars = _bars(root, "count")
    assert [bar.get("data-date") for bar in bars] == [day["date"] for day in daily]
    heights = [float(bar.get("height")) for bar in bars]
    assert heights[1] == pytest.approx(2 * heights[0]) and heights[4] == pytest.approx(8 * heights[0])
    median = next(path for path in root.iter(f"{SVG}path") if path.get("class") == "line median")
    assert median.get("d").count("M") == 3  # 1–3 March, 5 March, 8 March
    assert root.find(f".//{SVG}line[@class='target']") is not None
    labels = [text.text for text in root.iter(f"{SVG}text")]
    assert "03-01" in labels and "100%" in labels and ZH["within_deadline"] in labels


@pytest.mark.parametrize("draw", [charts.trend_chart, charts.site_chart])
def test_charts_without_data_say_so(draw: Any) -> None:
    root = _svg(draw([], title="空", labels=ZH))
    assert [text.text for text in root.iter(f"{SVG}text") if text.get("class") == "empty"] == [ZH["no_data"]]
    assert not [rect for rect in root.iter(f"{SVG}rect") if "bar" in rect.get("class", "")]


def test_nice_ticks_are_round() -> None:
    assert charts.nice_ticks(97) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(9, 4) == [0, 2.5, 5, 7.5, 10]
    assert charts.nice_ticks(3, 4, whole=True) == [0, 1, 2, 3]
    assert charts.nice_ticks(0) == [0, 1]


# --- exports -----------------------------------------------------------------------------------------------------


def _table(tables: list[Table], name: str) -> Table:
    return next(table for table in tables if table.name == name)


def test_turnaround_tables_cover_every_part_with_numbers_and_local_times() -> None:
    tables = turnaround_tables(known_figures(), ZH)
    assert [table.name for table in tables] == ["intervals", "by-site", "by-modality", "by-priority", "by-reader",
                                                "daily", "breaches"]
    intervals = _table(tables, "intervals")
    assert intervals.rows[2] == [ZH["signed"], 128, 42.0, 95.5, 126.0, 0.9375]
    by_site = _table(tables, "by-site")
    assert len(by_site.headers) == 2 + 4 * 4 + 1 and by_site.rows[0][:2] == ["TS-DONGGUAN", "东关镇卫生院"]
    assert _table(turnaround_tables(known_figures(), EN), "by-site").rows[0][1] == "Dongguan Township"
    assert _table(tables, "by-priority").rows[0][1] == "特急"
    assert _table(tables, "daily").rows[0][0] == date(2026, 3, 1)
    breach = _table(tables, "breaches").rows[0]
    assert breach[0] == datetime(2026, 3, 2, 1, 30, tzinfo=UTC) and breach[0].utcoffset().total_seconds() == 8 * 3600


def test_csv_has_a_bom_round_trips_and_neutralises_formulas() -> None:
    table = _table(turnaround_tables(known_figures(), ZH), "breaches")
    body = csv_bytes(table)
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert rows[0] == table.headers
    assert rows[1][8] == "'=HYPERLINK(\"http://x\")"
    assert rows[2][8] == "网络中断, \"夜班\"\n无人"  # comma, quotes and a line break survive
    assert rows[1][0] == "2026-03-02 09:30:00+08:00" and rows[1][11] == "1"
    numbers = list(csv.reader(io.StringIO(csv_bytes(_table(turnaround_tables(known_figures(), ZH), "intervals"))
                                          .decode("utf-8-sig"), newline="")))
    assert numbers[3][1:] == ["128", "42.0", "95.5", "126.0", "0.9375"]
    hostile = Table("t", "t", ["a", "b", "c"], [["-2+3", "@SUM(A1)", -2]])
    assert list(csv.reader(io.StringIO(csv_bytes(hostile).decode("utf-8-sig"))))[1] == ["'-2+3", "'@SUM(A1)", "-2"]


def _live() -> dict[str, Any]:
    buckets = {"overdue": 2, "under_1h": 1, "under_4h": 0, "under_24h": 5, "later": 0}
    return {
        "at": "2026-03-31T02:00:00+00:00",
        "backlog": {"total": buckets, "by_modality": {"CT": buckets}, "by_priority": {"STAT": buckets}},
        "overdue": [{"task_id": 7, "study_uid": "1.2.3", "site": "TS-XIHE", "site_name": "西河镇卫生院", "modality": "CT",
                     "priority": "STAT", "due_at": "2026-03-31T01:00:00+00:00", "overdue_minutes": 60,
                     "holder": "reader-ct", "holder_name": "影像医师 李强", "held_since": "2026-03-31T00:30:00+00:00",
                     "assignee": None}],
        "readers": [{"name": "reader-ct", "display_name": "影像医师 李强", "modalities": ["CT", "DX"], "expert": False,
                     "on_duty": True, "open": 3, "weighted": 4.5, "holding": 1}],
        "silent_stations": [{"code": "VIL-LIJIA", "name": "李家村卫生室", "name_en": "Lijia",
                             "last_received_at": None}],
    }


def test_xlsx_has_a_sheet_per_table_with_numbers_percentages_and_local_times() -> None:
    cards = [{"name": "reader-ct", "display_name": "影像医师 李强", "volume": 12, "median_minutes": 40.0,
              "within_deadline_share": 0.9}]  # the other figures missing
    long_title = "A very long title for a sheet name that Excel refuses"
    tables = [*turnaround_tables(known_figures(), ZH), *live_tables(_live(), ZH), scorecard_table(cards, ZH),
              Table("a", long_title, ["x"], [[1]]), Table("b", long_title, ["x"], [[2]])]
    workbook = load_workbook(io.BytesIO(xlsx_bytes(tables, "Asia/Shanghai")))
    assert workbook.sheetnames[:3] == [ZH["title_intervals"], ZH["title_site"], ZH["title_modality"]]
    assert len(workbook.sheetnames) == len(tables) == len(set(workbook.sheetnames))
    assert all(len(name) <= 31 for name in workbook.sheetnames) and workbook.sheetnames[-1].endswith("(2)")
    intervals = workbook[ZH["title_intervals"]]
    assert [cell.value for cell in intervals[1]] == tables[0].headers
    assert intervals["A1"].font.b and intervals.freeze_panes == "A2"
    assert intervals.column_dimensions["A"].width >= 14  # "至报告首次打开用时" is nine wide characters
    assert [cell.value for cell in intervals[4]] == [ZH["signed"], 128, 42, 95.5, 126, 0.9375]
    assert intervals["F4"].number_format == "0.0%" and intervals["F4"].data_type == "n"
    breaches = workbook[ZH["title_breaches"]]
    assert breaches["A2"].value == datetime(2026, 3, 2, 9, 30) and breaches["A2"].is_date
    assert breaches["I2"].value == "=HYPERLINK(\"http://x\")" and breaches["I2"].data_type == "s"
    overdue = workbook[ZH["title_overdue"]]
    assert overdue["G2"].value == datetime(2026, 3, 31, 9, 0) and overdue["H2"].value == 60
    scorecards = workbook[ZH["title_scorecards"]]
    assert [cell.value for cell in scorecards[2]][:7] == ["reader-ct", "影像医师 李强", 12, 40, None, 0.9, None]


def test_live_and_scorecard_tables_name_their_columns() -> None:
    tables = {table.name: table for table in live_tables(_live(), ZH, "Asia/Shanghai")}
    assert list(tables) == ["backlog-total", "backlog-by-modality", "backlog-by-priority", "overdue", "readers",
                            "silent-stations"]
    assert tables["backlog-by-priority"].rows == [["特急", 2, 1, 0, 5, 0]]
    assert tables["readers"].rows == [["reader-ct", "影像医师 李强", "CT, DX", "否", "是", 3, 4.5, 1]]
    assert tables["overdue"].rows[0][6].isoformat() == "2026-03-31T09:00:00+08:00"
    card = scorecard_table([{"name": "x", "agree": 3, "significant": 1}], EN)
    assert card.headers[7:10] == [EN["agree"], EN["minor"], EN["significant"]]
    assert card.rows == [["x", None, None, None, None, None, None, 3, None, 1, None, None, None]]


# --- the monthly report ------------------------------------------------------------------------------------------


def _text(pdf: bytes, folder: Path) -> str:
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_monthly_pdf_shows_the_county_month_headline_sites_breaches_and_scorecards(tmp_path: Path) -> None:
    cards = [{"name": "reader-ct", "display_name": "影像医师 李强", "volume": 12, "median_minutes": 40.0,
              "p90_minutes": 80.0, "within_deadline_share": 0.9, "reviews_received": 4, "agreement_share": 0.75,
              "significant": 1, "reviews_done": 2, "addenda": 0}]
    pdf = monthly_pdf(known_figures(breaches=45), None, cards, centre_name=CENTRE, month="2026-03", language="zh",
                      generated_at=datetime(2026, 4, 1, 1, 0, tzinfo=UTC), timezone="Asia/Shanghai")
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf, tmp_path)
    for expected in (CENTRE, "2026-03", ZH["monthly_title"], "128", "42 分钟", "96 分钟", "93.8%", "50 分钟",
                     "东关镇卫生院", "西河镇卫生院", "特急", "影像医师 李强", "75.0%",
                     ZH["breaches_listed"].format(count=45, shown=BREACHES_LISTED), "生成于 2026-04-01 09:00",
                     "第 1 页，共 "):
        assert expected in text, expected
    assert text.count("网络中断") == BREACHES_LISTED - 1


def test_monthly_pdf_in_english_with_the_live_board(tmp_path: Path) -> None:
    pdf = monthly_pdf(known_figures(), _live(), [], centre_name="County Centre", month="2026-03", language="en",
                      generated_at=datetime(2026, 4, 1, 1, 0, tzinfo=UTC), timezone="Asia/Shanghai")
    text = _text(pdf, tmp_path)
    for expected in ("County Centre", "Monthly turnaround report", "Dongguan Township", "Page 1 of",
                     "Open work at 2026-03-31 10:00", "Past deadline 2", "42 minutes", "Nothing this month."):
        assert expected in text, expected
    assert "东关镇卫生院" not in text


def test_telerad_report_monthly_writes_the_centres_pdf(pull: Alliance, tmp_path: Path) -> None:
    ct = made(pull, CT, "DG_CT")
    ct.claim(10, "reader-ct"), ct.sign(60, "reader-ct")
    ecg = made(pull, ECG, "XH_ECG")
    ecg.claim(40, "reader-ecg"), ecg.sign(150, "reader-ecg")
    stat = made(pull, CT, "DG_CT", "dongguan", "STAT")
    stat.claim(5, "reader-ct")
    stat.at(31)
    jobs.sla_sweep()  # a STAT study is due in 30 minutes
    stat.sign(45, "reader-ct")
    env = {"TELERAD_DATABASE_URL": pull.config.database_url,
           "TELERAD_SERVICE_DATA_DIR": str(pull.config.service.data_dir)}

    def run(*arguments: str) -> Any:
        command = ["--config", str(ROOT / "config.yaml"), "report", "monthly", *arguments]
        return CliRunner().invoke(main, command, env=env)

    output = tmp_path / "march.pdf"
    result = run("--centre", "CNTY", "--month", "2026-03", "-o", str(output))
    assert result.exit_code == 0, result.output
    assert str(output) in result.output
    text = _text(output.read_bytes(), tmp_path)
    for expected in (CENTRE, "2026-03", "东关镇卫生院", "西河镇卫生院", "60 分钟", "66.7%", "心电医师 张敏"):
        assert expected in text, expected
    assert re.search(rf"{ZH['title_breaches']} \(1\)", text)

    february = tmp_path / "february.pdf"
    assert run("--centre", "CNTY", "--month", "2026-02", "--language", "en", "-o", str(february)).exit_code == 0
    text = _text(february.read_bytes(), tmp_path)
    assert "2026-02" in text and "Dongguan" not in text and ZH["no_data"] not in text and EN["no_data"] in text

    wrong = run("--centre", "CNTY", "--month", "March")
    assert wrong.exit_code == 2 and "YYYY-MM" in wrong.output
    unknown = run("--centre", "NOWHERE", "--month", "2026-03", "-o", str(tmp_path / "x.pdf"))
    assert unknown.exit_code == 1 and "NOWHERE" in unknown.output
