"""The dashboard's figures and lists as tables, written as CSV files or as one Excel workbook.

:func:`turnaround_tables`, :func:`live_tables` and :func:`scorecard_table` turn the figures of
:func:`reading_queue.turnaround.figures`, the live board of :func:`reading_queue.live.board` and the reader
scorecards into :class:`Table` objects with translated headers. Cells keep their kind: counts and minutes are
numbers (never formatted), shares are fractions of 1, times are aware datetimes (in the figures' time zone), days
are dates. :func:`csv_bytes` writes one table as RFC 4180 CSV in UTF-8 with a byte-order mark (so Excel in Chinese
opens it right), text that a spreadsheet would run as a formula neutralised with a leading apostrophe (OWASP's CSV
injection advice); :func:`xlsx_bytes` writes every table to its own sheet of an Office Open XML workbook.

The words come from the ``dashboard_output`` gettext catalogue: :func:`default_labels` in a request's language,
:func:`labels_in` for a given language outside a request (the monthly PDF).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext as flask_gettext
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from viewer.charts import text_width
from viewer.i18n import merged_catalogue
from viewer.worklist import language

Cell = str | int | float | date | datetime | None

#: The field of a site (or reader) item holding its name in each language.
NAME_KEYS = {"zh": "name", "en": "name_en"}
BUCKETS = ("overdue", "under_1h", "under_4h", "under_24h", "later")
DIMENSIONS = ("site", "modality", "priority", "reader")
#: A text cell starting with one of these is run as a formula by spreadsheets (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SHEET_NAME_LENGTH = 31
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True)
class Table:
    """One exportable table: ``name`` for files and links (``by-site``), ``title`` as people read it, the header
    and the rows; ``shares`` are the indexes of columns holding shares (0–1), shown as percentages in Excel."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    shares: tuple[int, ...] = ()


# --- labels ------------------------------------------------------------------------------------------------------


def labels_with(gettext: Callable[[str], str]) -> dict[str, str]:
    """Every word the charts, the exports and the monthly report show, translated by ``gettext``."""
    return {
        "assigned": gettext("Time to assignment"),
        "opened": gettext("Time to first opening"),
        "signed": gettext("Time to signed report"),
        "delivered": gettext("Time to delivery"),
        "interval": gettext("Interval"),
        "count": gettext("Number of studies"),
        "median": gettext("Median time"),
        "p90": gettext("90th percentile time"),
        "longest": gettext("Longest time"),
        "within_deadline": gettext("Share within deadline"),
        "with_unit": gettext("{measure} ({unit})"),
        "minutes": gettext("minutes"),
        "hours": gettext("hours"),
        "date": gettext("Day"),
        "studies_signed": gettext("Studies signed"),
        "below_target": gettext("Below the {share} target"),
        "no_data": gettext("No signed reports in this period."),
        "none_signed": gettext("nothing signed"),
        "code": gettext("Code"),
        "site": gettext("Sending site"),
        "modality": gettext("Modality"),
        "priority": gettext("Priority level"),
        "reader": gettext("Reader account"),
        "reader_name": gettext("Reader name"),
        "STAT": gettext("STAT"),
        "URGENT": gettext("Urgent"),
        "ROUTINE": gettext("Routine"),
        "completed_at": gettext("Study completed at"),
        "due_at": gettext("Deadline"),
        "breached_at": gettext("Deadline missed at"),
        "reason": gettext("Reason recorded"),
        "signed_at": gettext("Report signed at"),
        "study_uid": gettext("Study UID"),
        "task_id": gettext("Task number"),
        "overdue": gettext("Past deadline"),
        "under_1h": gettext("Due within 1 hour"),
        "under_4h": gettext("Due within 4 hours"),
        "under_24h": gettext("Due within 24 hours"),
        "later": gettext("Due later"),
        "all_open": gettext("All open work"),
        "overdue_minutes": gettext("Minutes past deadline"),
        "holder": gettext("Held by"),
        "held_since": gettext("Held since"),
        "assignee": gettext("Assigned to"),
        "modalities": gettext("Modalities read"),
        "expert": gettext("Expert reader"),
        "on_duty": gettext("On duty now"),
        "open": gettext("Open studies"),
        "weighted": gettext("Weighted load"),
        "holding": gettext("Studies claimed"),
        "yes": gettext("yes"),
        "no": gettext("no"),
        "name_en": gettext("English name"),
        "last_received_at": gettext("Last study received at"),
        "reviews_received": gettext("Peer reviews received"),
        "agree": gettext("Reviews agreeing"),
        "minor": gettext("Minor discrepancies"),
        "significant": gettext("Significant discrepancy reviews"),
        "agreement_share": gettext("Share of reviews agreeing"),
        "reviews_done": gettext("Peer reviews done"),
        "addenda": gettext("Addenda signed"),
        "title_intervals": gettext("Turnaround by interval"),
        "title_site": gettext("Turnaround by site"),
        "title_modality": gettext("Turnaround by modality"),
        "title_priority": gettext("Turnaround by priority"),
        "title_reader": gettext("Turnaround by reader"),
        "title_daily": gettext("Daily trend"),
        "title_breaches": gettext("Missed deadlines"),
        "title_backlog_total": gettext("Open work by time left"),
        "title_backlog_by_modality": gettext("Open work by modality"),
        "title_backlog_by_priority": gettext("Open work by priority"),
        "title_overdue": gettext("Studies past deadline"),
        "title_readers": gettext("Readers now"),
        "title_silent_stations": gettext("Stations silent today"),
        "title_scorecards": gettext("Reader scorecard"),
        "monthly_title": gettext("Monthly turnaround report"),
        "headline": gettext("The month in figures"),
        "site_chart": gettext("Time to signed report by sending site"),
        "trend_chart": gettext("Reports signed per day"),
        "breaches_listed": gettext("{count} deadlines missed; the first {shown} are listed."),
        "nothing_this_month": gettext("Nothing this month."),
        "open_work_at": gettext("Open work at {time}"),
        "generated": gettext("Generated {time} ({zone})"),
        "page": gettext("Page {page} of {pages}"),
    }


def default_labels() -> dict[str, str]:
    """The labels in the request's language (Flask-Babel), with ``name_key``: the field of a site's name to show."""
    return {**labels_with(flask_gettext), "name_key": NAME_KEYS.get(language(), "name")}


def labels_in(language_code: str) -> dict[str, str]:
    """The labels in ``language_code`` (``zh`` or ``en``) outside a request, from the same catalogues."""
    return dict(_labels_in(language_code))


@functools.cache
def _labels_in(language_code: str) -> dict[str, str]:
    catalogue = merged_catalogue(language_code)

    def gettext(text: str) -> str:
        message = catalogue.get(text)
        return message.string if message is not None and message.string else text

    return {**labels_with(gettext), "name_key": NAME_KEYS.get(language_code, "name")}


# --- tables ------------------------------------------------------------------------------------------------------


def turnaround_tables(figures: dict[str, Any], labels: dict[str, str]) -> list[Table]:
    """The turnaround figures as tables: overall per interval, per site, modality, priority and reader (every
    interval's count, median, 90th percentile and longest, and the share within deadline), the daily trend and
    the missed deadlines with their reasons. Times are in the figures' time zone."""
    zone = ZoneInfo(figures.get("timezone") or "UTC")
    intervals = list(figures["intervals"])
    measures = [labels["count"], *(_minutes(labels, key) for key in ("median", "p90", "longest"))]
    tables = [
        Table(
            "intervals", labels["title_intervals"], [labels["interval"], *measures, labels["within_deadline"]],
            [[labels[name], *_stats(stats), stats.get("within_deadline_share")]
             for name, stats in figures["intervals"].items()],
            shares=(5,),
        )
    ]
    for dimension in DIMENSIONS:
        per_interval = [f"{labels[name]} · {measure}" for name in intervals for measure in measures]
        headers = [labels["code"], labels[dimension], *per_interval, labels["within_deadline"]]
        rows = [
            [item["key"], _name(dimension, item, labels), *(cell for name in intervals for cell in _stats(item[name])),
             item["signed"].get("within_deadline_share")]
            for item in figures["groups"].get(dimension, [])
        ]
        tables.append(Table(f"by-{dimension}", labels[f"title_{dimension}"], headers, rows, shares=(len(headers) - 1,)))
    tables.append(Table(
        "daily", labels["title_daily"], [labels["date"], *measures, labels["within_deadline"]],
        [[date.fromisoformat(day["date"]), *_stats(day), day.get("within_deadline_share")] for day in figures["daily"]],
        shares=(5,),
    ))
    tables.append(Table(
        "breaches", labels["title_breaches"],
        [labels[key] for key in ("breached_at", "due_at", "completed_at", "code", "site", "modality", "priority",
                                 "reader", "reason", "signed_at", "study_uid", "task_id")],
        [[_moment(item["breached_at"], zone), _moment(item["due_at"], zone), _moment(item["opened_at"], zone),
          item["site"], item["site_name"], item["modality"], labels.get(item["priority"], item["priority"]),
          item["reader"], item["reason"], _moment(item["signed_at"], zone), item["study_uid"], item["task_id"]]
         for item in figures["breaches"]["items"]],
    ))
    return tables


def live_tables(live: dict[str, Any], labels: dict[str, str], timezone: str = "UTC") -> list[Table]:
    """The live board as tables: open work by time left (overall, per modality, per priority), the studies past
    their deadline, the readers, and the stations that sent nothing today. Times are in ``timezone``."""
    zone = ZoneInfo(timezone)
    backlog = live["backlog"]
    buckets = [labels[bucket] for bucket in BUCKETS]
    tables = [Table("backlog-total", labels["title_backlog_total"], ["", *buckets],
                    [[labels["all_open"], *(backlog["total"].get(bucket, 0) for bucket in BUCKETS)]])]
    for part, dimension in (("by_modality", "modality"), ("by_priority", "priority")):
        tables.append(Table(
            f"backlog-{part.replace('_', '-')}", labels[f"title_backlog_{part}"], [labels[dimension], *buckets],
            [[labels.get(key, key) if dimension == "priority" else key, *(counts.get(bucket, 0) for bucket in BUCKETS)]
             for key, counts in backlog[part].items()],
        ))
    tables.append(Table(
        "overdue", labels["title_overdue"],
        [labels[key] for key in ("task_id", "study_uid", "code", "site", "modality", "priority", "due_at",
                                 "overdue_minutes", "holder", "held_since", "assignee")],
        [[item["task_id"], item["study_uid"], item["site"], item["site_name"], item["modality"],
          labels.get(item["priority"], item["priority"]), _moment(item["due_at"], zone), item["overdue_minutes"],
          item["holder_name"], _moment(item["held_since"], zone), item["assignee"]] for item in live["overdue"]],
    ))
    tables.append(Table(
        "readers", labels["title_readers"],
        [labels[key]
         for key in ("reader", "reader_name", "modalities", "expert", "on_duty", "open", "weighted", "holding")],
        [[item["name"], item["display_name"], ", ".join(item["modalities"]), _yes(item["expert"], labels),
          _yes(item["on_duty"], labels), item["open"], item["weighted"], item["holding"]] for item in live["readers"]],
    ))
    tables.append(Table(
        "silent-stations", labels["title_silent_stations"],
        [labels["code"], labels["site"], labels["name_en"], labels["last_received_at"]],
        [[item["code"], item["name"], item["name_en"], _moment(item["last_received_at"], zone)]
         for item in live["silent_stations"]],
    ))
    return tables


#: The scorecard's columns: the card's key and the label of its header, in order.
SCORECARD_COLUMNS = (
    ("name", "reader"), ("display_name", "reader_name"), ("volume", "studies_signed"), ("median_minutes", "median"),
    ("p90_minutes", "p90"), ("within_deadline_share", "within_deadline"), ("reviews_received", "reviews_received"),
    ("agree", "agree"), ("minor", "minor"), ("significant", "significant"), ("agreement_share", "agreement_share"),
    ("reviews_done", "reviews_done"), ("addenda", "addenda"),
)


def scorecard_table(cards: list[dict[str, Any]], labels: dict[str, str]) -> Table:
    """The reader scorecards as one table: volume, turnaround, share within deadline, peer reviews received (by
    verdict) and done, addenda. A figure a card lacks is left empty."""
    headers = [_minutes(labels, label) if key.endswith("_minutes") else labels[label]
               for key, label in SCORECARD_COLUMNS]
    keys = [key for key, _ in SCORECARD_COLUMNS]
    return Table("scorecards", labels["title_scorecards"], headers, [[card.get(key) for key in keys] for card in cards],
                 shares=(keys.index("within_deadline_share"), keys.index("agreement_share")))


def _stats(stats: dict[str, Any]) -> list[Cell]:
    return [stats.get("count"), stats.get("median_minutes"), stats.get("p90_minutes"), stats.get("max_minutes")]


def _minutes(labels: dict[str, str], key: str) -> str:
    return labels["with_unit"].format(measure=labels[key], unit=labels["minutes"])


def _name(dimension: str, item: dict[str, Any], labels: dict[str, str]) -> str:
    if dimension == "priority":
        return labels.get(item["key"], item["key"])
    return item.get(labels.get("name_key", "name")) or item["name"]


def _moment(value: str | None, zone: ZoneInfo) -> datetime | None:
    """An ISO 8601 time of the figures in ``zone`` (a time without offset is UTC, as the database keeps it)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)


def _yes(value: bool, labels: dict[str, str]) -> str:
    return labels["yes"] if value else labels["no"]


# --- files -------------------------------------------------------------------------------------------------------


def csv_bytes(table: Table) -> bytes:
    """The table as CSV (RFC 4180: CRLF, quotes where needed) in UTF-8 with a byte-order mark. Numbers are written
    as they are, times in ISO 8601 with their offset; text starting like a formula gets a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in [table.headers, *table.rows]:
        writer.writerow([_csv_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8-sig")


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return str(value)


def xlsx_bytes(tables: Sequence[Table], timezone: str) -> bytes:
    """The tables as one Excel workbook, a sheet each (named by its title, cut to 31 characters and made unique):
    bold frozen header, fitted columns, numbers as numbers, shares as percentages, times as the service's local
    time (``timezone``) with a date format. Text is never taken for a formula."""
    zone = ZoneInfo(timezone)
    workbook = Workbook()
    workbook.remove(workbook.active)
    used: set[str] = set()
    for table in tables:
        sheet = workbook.create_sheet(_sheet_name(table.title or table.name, used))
        for column, header in enumerate(table.headers, start=1):
            _write(sheet.cell(row=1, column=column), header, zone).font = Font(bold=True)
        for number, row in enumerate(table.rows, start=2):
            for column, value in enumerate(row, start=1):
                cell = _write(sheet.cell(row=number, column=column), value, zone)
                if column - 1 in table.shares:
                    cell.number_format = "0.0%"
        sheet.freeze_panes = "A2"
        for column, values in enumerate(zip(table.headers, *table.rows, strict=True), start=1):
            sheet.column_dimensions[get_column_letter(column)].width = _width(values)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _write(cell: Any, value: Cell, zone: ZoneInfo) -> Any:
    if isinstance(value, datetime):
        cell.value = value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
        cell.number_format = "yyyy-mm-dd hh:mm:ss"
    elif isinstance(value, date):
        cell.value = value
        cell.number_format = "yyyy-mm-dd"
    elif isinstance(value, str):
        cell.value = ILLEGAL_CHARACTERS_RE.sub("", value)
        cell.data_type = "s"  # openpyxl would take "=..." for a formula
    else:
        cell.value = value
    return cell


def _sheet_name(title: str, used: set[str]) -> str:
    """A legal sheet name (no ``[]:*?/\\``, at most 31 characters) not yet in ``used`` (compared without case)."""
    base = _SHEET_FORBIDDEN.sub(" ", title).strip(" '")[:SHEET_NAME_LENGTH] or "Sheet"
    name, number = base, 1
    while name.casefold() in used:
        number += 1
        suffix = f" ({number})"
        name = base[: SHEET_NAME_LENGTH - len(suffix)] + suffix
    used.add(name.casefold())
    return name


def _width(values: Iterable[Cell]) -> float:
    """A column's width in Excel's units (about one Latin character; a CJK character counts two)."""
    longest = max((19 if isinstance(value, datetime) else text_width(_csv_cell(value), 2)
                   for value in values if value is not None), default=8)
    return min(max(longest + 2, 8), 60)
