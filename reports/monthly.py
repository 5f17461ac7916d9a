"""The county reading centre's monthly report for the province: one A4 PDF of the month's turnaround.

:func:`monthly_pdf` lays out, with fpdf2 and the CJK font of :mod:`reports.pdf`: the title (county and month),
the month in figures (reports signed, median and 90th percentile time to signature and to delivery, the share
signed within the deadline, the deadlines missed), the table and bar chart of the sending sites, the tables per
modality and per priority, the daily trend as a small chart, the missed deadlines with their reasons (the first
30) and the reader scorecards; every page has its number and the time the report was made. Charts are drawn with
fpdf2's own lines and rectangles (it cannot render SVG text reliably), with the scales of :mod:`viewer.charts`.
The words are those of the dashboard's exports (:func:`viewer.export.labels_in`), in Chinese or English.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos

from reports.pdf import add_cjk_font
from viewer.charts import (
    TARGET_SHARE,
    fit_text,
    format_minutes,
    format_share,
    nice_ticks,
    ranked_sites,
    signed_caption,
    time_scale,
)
from viewer.export import labels_in

BREACHES_LISTED = 30
TREND_HEIGHT = 80.0  # millimetres, legend and date labels included
SITE_ROW, SITE_AXIS, SITE_LABEL, SITE_SHARE = 7.0, 11.0, 42.0, 16.0  # millimetres
_INK, _GREY, _GRID = (20, 20, 20), (100, 100, 100), (205, 205, 205)
_MEDIAN, _P90 = (31, 95, 168), (141, 180, 226)
_LATE, _LATE_P90 = (179, 38, 30), (235, 162, 156)
_P90_LINE, _COUNT = (194, 84, 0), (122, 147, 173)
_BAND = (245, 247, 250)
_HEADINGS = FontFace(emphasis="NONE", fill_color=(225, 232, 242))


class _MonthlyPdf(FPDF):
    """A4 pages in the CJK font, with the page number and the time of generation in the footer."""

    def __init__(self, labels: dict[str, str], language: str, generated_at: datetime, timezone: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.font_name = add_cjk_font(self)
        self.labels = labels
        local = generated_at.astimezone(ZoneInfo(timezone))
        self.generated = labels["generated"].format(time=f"{local:%Y-%m-%d %H:%M}", zone=timezone)
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.alias_nb_pages()
        self.set_creator("Telerad")
        self.set_lang("zh-CN" if language == "zh" else "en")
        self.set_creation_date(generated_at)

    def title_page(self, centre_name: str, month: str) -> None:
        """The first page's title: the county's name, then the month and what the report is."""
        self.set_title(f"{centre_name} {month} {self.labels['monthly_title']}")
        self.add_page()
        self.set_font(self.font_name, size=17)
        self.set_text_color(*_INK)
        self.multi_cell(0, 9, centre_name, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font_size(13)
        self.cell(0, 8, f"{month}  {self.labels['monthly_title']}", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*_GREY)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(3)

    @property
    def inner_width(self) -> float:
        return self.w - self.l_margin - self.r_margin

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(self.font_name, size=8)
        self.set_text_color(*_GREY)
        self.cell(self.inner_width / 2, 5, self.generated, align="L")
        self.cell(self.inner_width / 2, 5, self.labels["page"].format(page=self.page_no(), pages="{nb}"), align="R")

    def heading(self, text: str, room: float = 30) -> None:
        """A section's heading, on a new page unless ``room`` millimetres of its content fit below it."""
        if self.will_page_break(room + 10):
            self.add_page()
        self.ln(3)
        self.set_font(self.font_name, size=12)
        self.set_text_color(*_INK)
        self.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def text_line(self, text: str, size: float = 9, colour: tuple[int, int, int] = _GREY) -> None:
        self.set_font(self.font_name, size=size)
        self.set_text_color(*colour)
        self.multi_cell(0, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)

    def tiles(self, items: Sequence[tuple[str, str]], columns: int = 4) -> None:
        """Label over a large value, ``columns`` to a row."""
        width = self.inner_width / columns
        for start in range(0, len(items), columns):
            top = self.get_y()
            for number, (label, value) in enumerate(items[start : start + columns]):
                self.set_xy(self.l_margin + number * width, top)
                self.set_font(self.font_name, size=8)
                self.set_text_color(*_GREY)
                self.multi_cell(width - 3, 4, label, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
                self.set_font_size(15)
                self.set_text_color(*_INK)
                self.cell(width - 3, 8, value)
            self.set_xy(self.l_margin, top + 18)

    def grid_table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float],
                   align: str) -> None:
        """A table with a shaded header (repeated after a page break) and banded rows; ``align`` has a letter per
        column, ``L`` for text and ``R`` for figures."""
        self.set_font(self.font_name, size=8)
        self.set_text_color(*_INK)
        self.set_draw_color(*_GRID)
        with self.table(col_widths=tuple(widths), text_align=tuple("RIGHT" if a == "R" else "LEFT" for a in align),
                        headings_style=_HEADINGS, cell_fill_color=_BAND, cell_fill_mode="ROWS", line_height=4.6,
                        padding=1, width=self.inner_width) as table:
            for row in [headers, *rows]:
                cells = table.row()
                for value in row:
                    cells.cell(value)
        self.ln(2)


def monthly_pdf(
    figures: dict[str, Any],
    live_or_none: dict[str, Any] | None,
    cards: list[dict[str, Any]],
    *,
    centre_name: str,
    month: str,
    language: str,
    generated_at: datetime,
    timezone: str,
) -> bytes:
    """The monthly report of ``centre_name`` for ``month`` (``YYYY-MM``) as an A4 PDF.

    ``figures`` are those of :func:`reading_queue.turnaround.figures` for the month, ``live_or_none`` the live board
    (:func:`reading_queue.live.board`) to show the open work at generation, ``cards`` the reader scorecards.
    ``language`` is ``zh`` or ``en``; times are shown in ``timezone``.
    """
    labels = labels_in(language)
    zone = ZoneInfo(timezone)
    pdf = _MonthlyPdf(labels, language, generated_at, timezone)
    pdf.title_page(centre_name, month)

    signed, delivered = figures["intervals"]["signed"], figures["intervals"]["delivered"]
    pdf.heading(labels["headline"])
    pdf.tiles([
        (labels["studies_signed"], str(signed["count"])),
        (f"{labels['signed']} · {labels['median']}", format_minutes(signed["median_minutes"], labels)),
        (f"{labels['signed']} · {labels['p90']}", format_minutes(signed["p90_minutes"], labels)),
        (labels["within_deadline"], format_share(signed.get("within_deadline_share"))),
        (labels["title_breaches"], str(figures["breaches"]["count"])),
        (f"{labels['delivered']} · {labels['median']}", format_minutes(delivered["median_minutes"], labels)),
        (f"{labels['delivered']} · {labels['p90']}", format_minutes(delivered["p90_minutes"], labels)),
    ])
    if live_or_none is not None:
        at = datetime.fromisoformat(live_or_none["at"]).astimezone(zone)
        total = live_or_none["backlog"]["total"]
        pdf.text_line(labels["open_work_at"].format(time=f"{at:%Y-%m-%d %H:%M}") + ": " + " · ".join(
            f"{labels[bucket]} {count}" for bucket, count in total.items()), colour=_INK)

    names = labels["name_key"]
    sites = figures["groups"]["site"]
    pdf.heading(labels["title_site"])
    _group_table(pdf, labels, labels["site"], [(str(site[names] or site["key"]), site) for site in sites])
    if ranked_sites(sites)[0]:
        pdf.heading(labels["site_chart"], room=SITE_ROW * 3 + SITE_AXIS + 6)
        _site_chart(pdf, sites, labels)
    for dimension in ("modality", "priority"):
        pdf.heading(labels[f"title_{dimension}"])
        items = figures["groups"][dimension]
        _group_table(pdf, labels, labels[dimension],
                     [(labels.get(item["key"], item["key"]) if dimension == "priority" else item["key"], item)
                      for item in items])

    pdf.heading(labels["trend_chart"], room=TREND_HEIGHT)
    if figures["daily"]:
        _trend_chart(pdf, figures["daily"], labels)
    else:
        pdf.text_line(labels["no_data"])

    breaches = figures["breaches"]
    pdf.heading(f"{labels['title_breaches']} ({breaches['count']})")
    listed = breaches["items"][:BREACHES_LISTED]
    if listed:
        pdf.text_line(labels["breaches_listed"].format(count=breaches["count"], shown=len(listed)))
        pdf.grid_table(
            [labels[key] for key in ("breached_at", "site", "modality", "priority", "reader", "reason")],
            [[f"{datetime.fromisoformat(item['breached_at']).astimezone(zone):%m-%d %H:%M}", item["site_name"],
              item["modality"], labels.get(item["priority"], item["priority"]), item["reader"] or "—",
              item["reason"] or "—"] for item in listed],
            (22, 34, 18, 16, 26, 64),
            "LLLLLL",
        )
    else:
        pdf.text_line(labels["nothing_this_month"])

    pdf.heading(labels["title_scorecards"])
    if cards:
        pdf.grid_table(
            [labels[key] for key in ("reader_name", "studies_signed", "median", "p90", "within_deadline",
                                     "reviews_received", "agreement_share", "significant", "reviews_done", "addenda")],
            [[card.get("display_name") or card.get("name") or "—", _count(card.get("volume")),
              format_minutes(card.get("median_minutes"), labels), format_minutes(card.get("p90_minutes"), labels),
              format_share(card.get("within_deadline_share")), _count(card.get("reviews_received")),
              format_share(card.get("agreement_share")), _count(card.get("significant")),
              _count(card.get("reviews_done")), _count(card.get("addenda"))] for card in cards],
            (30, 15, 18, 18, 17, 16, 17, 16, 16, 17),
            "LRRRRRRRRR",
        )
    else:
        pdf.text_line(labels["nothing_this_month"])
    return bytes(pdf.output())


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def _group_table(pdf: _MonthlyPdf, labels: dict[str, str], first: str, items: list[tuple[str, dict[str, Any]]]) -> None:
    """One row per group: reports signed, median and 90th percentile to signature and to delivery, share on time."""
    if not items:
        pdf.text_line(labels["nothing_this_month"])
        return
    headers = [first, labels["studies_signed"], f"{labels['signed']} · {labels['median']}",
               f"{labels['signed']} · {labels['p90']}", f"{labels['delivered']} · {labels['median']}",
               labels["within_deadline"]]
    rows = [[name, str(item["signed"]["count"]), format_minutes(item["signed"]["median_minutes"], labels),
             format_minutes(item["signed"]["p90_minutes"], labels),
             format_minutes(item["delivered"]["median_minutes"], labels),
             format_share(item["signed"].get("within_deadline_share"))] for name, item in items]
    pdf.grid_table(headers, rows, (50, 22, 28, 28, 28, 24), "LRRRRR")


def _legend(pdf: _MonthlyPdf, entries: Sequence[tuple[tuple[int, int, int], str]]) -> None:
    pdf.set_font(pdf.font_name, size=8)
    pdf.set_text_color(*_INK)
    x, y = pdf.l_margin, pdf.get_y()
    for colour, caption in entries:
        pdf.set_fill_color(*colour)
        pdf.rect(x, y + 0.8, 4, 3, style="F")
        pdf.set_xy(x + 5, y)
        pdf.cell(pdf.get_string_width(caption) + 2, 4.6, caption)
        x += pdf.get_string_width(caption) + 12
    pdf.set_xy(pdf.l_margin, y + 6)


def _site_chart(pdf: _MonthlyPdf, sites: list[dict[str, Any]], labels: dict[str, str]) -> None:
    """Horizontal bars of the median and 90th percentile time to signature per site, slowest first, with the
    share within the deadline at the end; sites below the target in red. A long list goes on over pages, each
    part with its axis."""
    measured, _idle = ranked_sites(sites)
    longest = max(site["signed"]["p90_minutes"] or site["signed"]["median_minutes"] for site in measured)
    per_unit, unit = time_scale(longest)
    ticks = nice_ticks(longest / per_unit, 5)
    _legend(pdf, [(_MEDIAN, labels["median"]), (_P90, labels["p90"]),
                  (_LATE, labels["below_target"].format(share=format_share(TARGET_SHARE)))])
    while measured:
        fitting = int((pdf.page_break_trigger - pdf.get_y() - SITE_AXIS) // SITE_ROW)
        if fitting < min(3, len(measured)):
            pdf.add_page()
            continue
        _site_axis(pdf, ticks, signed_caption(labels, unit), len(measured[:fitting]))
        _site_bars(pdf, measured[:fitting], labels, ticks[-1] * per_unit)
        measured = measured[fitting:]


def _site_bars(pdf: _MonthlyPdf, sites: list[dict[str, Any]], labels: dict[str, str], full: float) -> None:
    """One row per site from the current position, which ends below the axis; ``full`` minutes span the width."""
    left, width = pdf.l_margin + SITE_LABEL, pdf.inner_width - SITE_LABEL - SITE_SHARE
    top = pdf.get_y()
    for number, site in enumerate(sites):
        y = top + number * SITE_ROW
        signed = site["signed"]
        share = signed.get("within_deadline_share")
        late = share is not None and share < TARGET_SHARE
        p90 = signed["p90_minutes"] if signed["p90_minutes"] is not None else signed["median_minutes"]
        name = str(site[labels["name_key"]] or site["key"])
        pdf.set_font(pdf.font_name, size=8)
        pdf.set_text_color(*_INK)
        pdf.set_xy(pdf.l_margin, y + 1)
        pdf.cell(SITE_LABEL - 2, 5, fit_text(name, SITE_LABEL - 2, pdf.get_string_width), align="R")
        for minutes, offset, colour in ((signed["median_minutes"], 0.6, _LATE if late else _MEDIAN),
                                        (p90, 3.6, _LATE_P90 if late else _P90)):
            pdf.set_fill_color(*colour)
            pdf.rect(left, y + offset, max(minutes / full * width, 0.2), 2.8, style="F")
        pdf.set_text_color(*(_LATE if late else _INK))
        pdf.set_xy(left + max(p90, signed["median_minutes"]) / full * width + 1, y + 1)
        pdf.cell(SITE_SHARE, 5, format_share(share))
    pdf.set_text_color(*_INK)
    pdf.set_xy(pdf.l_margin, top + len(sites) * SITE_ROW + SITE_AXIS)


def _site_axis(pdf: _MonthlyPdf, ticks: list[float], caption: str, rows: int) -> None:
    """Grid lines for ``rows`` rows from the current position (which stays), the tick values and the unit below."""
    left, width = pdf.l_margin + SITE_LABEL, pdf.inner_width - SITE_LABEL - SITE_SHARE
    top = pdf.get_y()
    bottom = top + rows * SITE_ROW
    pdf.set_draw_color(*_GRID)
    pdf.set_font(pdf.font_name, size=7)
    pdf.set_text_color(*_GREY)
    for tick in ticks:
        x = left + tick / ticks[-1] * width
        pdf.line(x, top, x, bottom)
        pdf.set_xy(x - 8, bottom + 0.5)
        pdf.cell(16, 4, f"{tick:g}", align="C")
    pdf.set_xy(left, bottom + 4.5)
    pdf.cell(width, 4, caption, align="C")
    pdf.set_xy(pdf.l_margin, top)


def _trend_chart(pdf: _MonthlyPdf, daily: list[dict[str, Any]], labels: dict[str, str]) -> None:
    """Two small panels over the month's days: reports signed per day (bars) and the median and 90th percentile
    time to signature (lines)."""
    days = {date.fromisoformat(item["date"]): item for item in daily}
    first, last = min(days), max(days)
    span = (last - first).days + 1
    panel, gap, left_axis = 28.0, 9.0, 12.0
    _legend(pdf, [(_COUNT, labels["studies_signed"]), (_MEDIAN, labels["median"]), (_P90_LINE, labels["p90"])])
    left = pdf.l_margin + left_axis
    band = (pdf.inner_width - left_axis) / span
    longest = max((item["p90_minutes"] or item["median_minutes"] or 0) for item in days.values())
    per_unit, unit = time_scale(longest)
    top = pdf.get_y() + 4
    count_ticks = nice_ticks(max(item["count"] for item in days.values()), 3, whole=True)
    time_ticks = nice_ticks(longest / per_unit, 3)
    pdf.set_font(pdf.font_name, size=7)
    for number, (caption, ticks) in enumerate(((labels["studies_signed"], count_ticks),
                                               (signed_caption(labels, unit), time_ticks))):
        bottom = top + number * (panel + gap) + panel
        pdf.set_text_color(*_GREY)
        pdf.set_xy(left, bottom - panel - 4.5)
        pdf.cell(0, 4, caption)
        pdf.set_draw_color(*_GRID)
        for tick in ticks:
            y = bottom - tick / ticks[-1] * panel
            pdf.line(left, y, pdf.w - pdf.r_margin, y)
            pdf.set_xy(pdf.l_margin, y - 2)
            pdf.cell(left_axis - 1, 4, f"{tick:g}", align="R")
    count_bottom, time_bottom = top + panel, top + 2 * panel + gap
    pdf.set_fill_color(*_COUNT)
    for day, item in days.items():
        height = item["count"] / count_ticks[-1] * panel
        pdf.rect(left + ((day - first).days + 0.15) * band, count_bottom - height, band * 0.7, height, style="F")
    for key, colour in (("median_minutes", _MEDIAN), ("p90_minutes", _P90_LINE)):
        pdf.set_draw_color(*colour)
        pdf.set_fill_color(*colour)
        pdf.set_line_width(0.5)
        previous = None
        for offset in range(span):
            item = days.get(first + timedelta(days=offset))
            if item is None or item[key] is None:
                previous = None
                continue
            point = (left + (offset + 0.5) * band, time_bottom - item[key] / per_unit / time_ticks[-1] * panel)
            if previous is not None:
                pdf.line(*previous, *point)
            pdf.ellipse(point[0] - 0.7, point[1] - 0.7, 1.4, 1.4, style="F")
            previous = point
    pdf.set_line_width(0.2)
    pdf.set_text_color(*_GREY)
    step = max(1, -(-span // 10))
    for offset in range(0, span, step):
        pdf.set_xy(left + (offset + 0.5) * band - 6, time_bottom + 0.5)
        pdf.cell(12, 4, f"{first + timedelta(days=offset):%m-%d}", align="C")
    pdf.set_text_color(*_INK)
    pdf.set_xy(pdf.l_margin, time_bottom + 7)
