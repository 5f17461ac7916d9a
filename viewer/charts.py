"""Turnaround charts drawn on the server as SVG: the daily trend and the comparison of sending sites.

The charts take the items of :func:`reading_queue.turnaround.figures` (``daily`` and ``groups["site"]``) and the
words to show (translated by the caller, see :func:`viewer.export.default_labels`). They are plain SVG 1.1 with
no script: large type, dark ink on white, round axis ticks, durations in hours once they pass three hours, and
``role="img"`` with a ``<title>`` and a ``<desc>`` that reads the figures out. Every text is escaped.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

#: The share of reports to sign within their deadline; a site below it is drawn in red.
TARGET_SHARE = 0.95
WIDTH = 760
FONT_SIZE = 15
TITLE_SIZE = 18
FONT_FAMILY = "'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC', sans-serif"

_INK, _MUTED, _GRID = "#1b1b1b", "#4a4a4a", "#d4d4d4"
_MEDIAN, _P90 = "#1f5fa8", "#8db4e2"
_LATE, _LATE_P90 = "#b3261e", "#eba29c"
_P90_LINE, _SHARE, _COUNT = "#c25400", "#2e7d32", "#7a93ad"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def nice_ticks(top: float, count: int = 5, *, whole: bool = False) -> list[float]:
    """Round axis ticks from 0 up to at least ``top``: steps of 1, 2, 2.5 or 5 times a power of ten (no 2.5 when
    ``whole``, and never below 1)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(power * factor for factor in factors if power * factor >= raw * (1 - 1e-9))
    if whole:
        step = max(1.0, step)
    return [round(number * step, 10) for number in range(math.ceil(top / step - 1e-9) + 1)]


def time_scale(longest_minutes: float) -> tuple[float, str]:
    """The unit durations up to ``longest_minutes`` are shown in: ``(minutes per unit, label key)``, hours past
    three hours, else minutes."""
    return (60.0, "hours") if longest_minutes > 180 else (1.0, "minutes")


def format_minutes(minutes: float | None, labels: dict[str, str]) -> str:
    """A duration in its own unit: ``42 minutes`` or ``5.5 hours``; a dash when unknown."""
    if minutes is None:
        return "—"
    per_unit, unit = time_scale(minutes)
    return f"{minutes / per_unit:.{0 if per_unit == 1 else 1}f} {labels[unit]}"


def format_share(share: float | None) -> str:
    """A share (0–1) as a percentage with one decimal; a dash when unknown."""
    return "—" if share is None else f"{share * 100:.1f}%"


def text_width(text: str, size: float) -> float:
    """The approximate width of ``text`` at ``size``: full width for CJK characters, 0.6 of it for the rest."""
    return sum(size if unicodedata.east_asian_width(char) in "WF" else size * 0.6 for char in text)


def fit_text(text: str, width: float, measure: Callable[[str], float]) -> str:
    """``text`` cut with an ellipsis so that ``measure`` finds it no wider than ``width``."""
    if measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…"


def signed_caption(labels: dict[str, str], unit: str) -> str:
    """The caption of an axis of time to signature in ``unit`` (``minutes`` or ``hours``)."""
    return labels["with_unit"].format(measure=labels["signed"], unit=labels[unit])


def trend_chart(
    daily: list[dict[str, Any]], *, title: str, labels: dict[str, str], target: float = TARGET_SHARE
) -> str:
    """The daily trend as three panels over one date axis: reports signed per day (bars), the median and 90th
    percentile time to signature (lines), and the share signed within the deadline (a line on 0–100%, the
    ``target`` dashed). Days without a signature stay empty."""
    days = {date.fromisoformat(item["date"]): item for item in daily if item.get("count")}
    if not days:
        return _empty(title, labels, "trend")
    first, last = min(days), max(days)
    span = (last - first).days + 1
    dates = [first + timedelta(days=number) for number in range(span)]
    left, right, top, panel, gap = 70, 24, 112, 120, 60
    plot_width = WIDTH - left - right
    band = plot_width / span

    def x_of(index: int) -> float:
        return left + (index + 0.5) * band

    longest = max((item["p90_minutes"] or item["median_minutes"] or 0) for item in days.values())
    per_unit, unit = time_scale(longest)
    panels = [
        (labels["studies_signed"], nice_ticks(max(item["count"] for item in days.values()), 4, whole=True), "{:g}"),
        (signed_caption(labels, unit), nice_ticks(longest / per_unit, 4), "{:g}"),
        (labels["within_deadline"], [0.0, 0.25, 0.5, 0.75, 1.0], "{:.0%}"),
    ]
    body = [
        _title(title),
        *_legend(66, [(_COUNT, labels["studies_signed"], "bar"), (_MEDIAN, labels["median"], "line"),
                      (_P90_LINE, labels["p90"], "line"), (_SHARE, labels["within_deadline"], "line")]),
    ]
    scales = []
    for number, (caption, ticks, fmt) in enumerate(panels):
        y0 = top + number * (panel + gap)
        scales.append((y0 + panel, ticks[-1]))
        body.append(f'<text x="{left}" y="{y0 - 16}" font-weight="bold" fill="{_INK}">{_text(caption)}</text>')
        for tick in ticks:
            y = y0 + panel - tick / ticks[-1] * panel
            body.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
            body.append(f'<text x="{left - 8}" y="{y + 5:.1f}" text-anchor="end" fill="{_MUTED}">'
                        f'{_text(fmt.format(tick))}</text>')

    def y_in(panel_number: int, value: float) -> float:
        bottom, high = scales[panel_number]
        return bottom - value / high * panel

    for index, day in enumerate(dates):
        if day in days:
            item = days[day]
            y = y_in(0, item["count"])
            body.append(
                f'<rect class="bar count" data-date="{day.isoformat()}" x="{x_of(index) - band * 0.35:.1f}" '
                f'y="{y:.1f}" width="{band * 0.7:.1f}" height="{scales[0][0] - y:.1f}" fill="{_COUNT}">'
                f'<title>{day.isoformat()}: {item["count"]}</title></rect>'
            )
    lines = (("median", "median_minutes", _MEDIAN, 1, per_unit), ("p90", "p90_minutes", _P90_LINE, 1, per_unit),
             ("share", "within_deadline_share", _SHARE, 2, 1.0))
    for kind, key, colour, panel_number, scale in lines:
        values = [days[day].get(key) if day in days else None for day in dates]
        points = [(x_of(index), None if value is None else y_in(panel_number, value / scale))
                  for index, value in enumerate(values)]
        body.extend(_line(kind, points, colour))
    target_y = y_in(2, target)
    body.append(f'<line class="target" x1="{left}" x2="{WIDTH - right}" y1="{target_y:.1f}" y2="{target_y:.1f}" '
                f'stroke="{_LATE}" stroke-width="1.5" stroke-dasharray="6 4"/>')
    bottom = scales[2][0]
    step = max(1, math.ceil(span / 8))
    for index in range(0, span, step):
        body.append(f'<text x="{x_of(index):.1f}" y="{bottom + 22}" text-anchor="middle" fill="{_MUTED}">'
                    f'{dates[index]:%m-%d}</text>')
    total = sum(item["count"] for item in days.values())
    desc = (f"{labels['date']} {first.isoformat()} – {last.isoformat()}. {labels['studies_signed']}: {total}. "
            + " ".join(f"{day.isoformat()}: {item['count']}, {labels['median']} "
                       f"{format_minutes(item['median_minutes'], labels)}, {labels['within_deadline']} "
                       f"{format_share(item.get('within_deadline_share'))}." for day, item in sorted(days.items())))
    return _svg("trend", title, desc, bottom + 40, body)


def ranked_sites(sites: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The sites that signed reports, slowest median first, and those that signed none."""
    measured = sorted((site for site in sites if site["signed"]["median_minutes"] is not None),
                      key=lambda site: (-site["signed"]["median_minutes"], str(site["key"])))
    return measured, [site for site in sites if site["signed"]["median_minutes"] is None]


def site_chart(sites: list[dict[str, Any]], *, title: str, labels: dict[str, str], target: float = TARGET_SHARE) -> str:
    """Median and 90th percentile time to signature per sending site as horizontal bars, the slowest first, with
    the share within the deadline at the end of each; a site below ``target`` is drawn in red. Sites that signed
    nothing in the period are listed last without bars."""
    names = labels.get("name_key", "name")
    measured, idle = ranked_sites(sites)
    if not measured:
        return _empty(title, labels, "sites")
    shown = [str(site[names] or site["key"]) for site in measured + idle]
    label_width = min(max(text_width(name, FONT_SIZE) for name in shown), 240)
    left, right, top, row = 16 + label_width + 12, 84, 96, 48
    plot_width = WIDTH - left - right
    longest = max(site["signed"]["p90_minutes"] or site["signed"]["median_minutes"] for site in measured)
    per_unit, unit = time_scale(longest)
    ticks = nice_ticks(longest / per_unit, 5)
    full = ticks[-1] * per_unit

    def x_of(minutes: float) -> float:
        return left + minutes / full * plot_width

    bottom = top + row * len(shown)
    body = [
        _title(title),
        *_legend(66, [(_MEDIAN, labels["median"], "bar"), (_P90, labels["p90"], "bar"),
                      (_LATE, labels["below_target"].format(share=format_share(target)), "bar")]),
    ]
    for tick in ticks:
        x = x_of(tick * per_unit)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{bottom}" stroke="{_GRID}"/>')
        body.append(f'<text x="{x:.1f}" y="{bottom + 20}" text-anchor="middle" fill="{_MUTED}">{tick:g}</text>')
    body.append(f'<text x="{left + plot_width / 2:.1f}" y="{bottom + 44}" text-anchor="middle" fill="{_INK}">'
                f'{_text(signed_caption(labels, unit))}</text>')
    lines = []
    for number, (site, name) in enumerate(zip(measured + idle, shown, strict=True)):
        y = top + number * row
        signed = site["signed"]
        body.append(f'<text x="{left - 12}" y="{y + 22}" text-anchor="end" fill="{_INK}">'
                    f'{_text(fit_text(name, label_width, _measure))}<title>{_text(name)}</title></text>')
        if signed["median_minutes"] is None:
            body.append(f'<text x="{left + 6}" y="{y + 22}" fill="{_MUTED}">{_text(labels["none_signed"])}</text>')
            continue
        share = signed.get("within_deadline_share")
        late = share is not None and share < target
        p90 = signed["p90_minutes"] if signed["p90_minutes"] is not None else signed["median_minutes"]
        key = _text(site["key"])
        for kind, minutes, offset, colour in (("median", signed["median_minutes"], 4, _LATE if late else _MEDIAN),
                                              ("p90", p90, 22, _LATE_P90 if late else _P90)):
            body.append(
                f'<rect class="bar {kind}{" late" if late else ""}" data-site="{key}" x="{left}" y="{y + offset}" '
                f'width="{x_of(minutes) - left:.2f}" height="16" fill="{colour}">'
                f'<title>{_text(name)}: {_text(labels[kind])} {_text(format_minutes(minutes, labels))}</title></rect>'
            )
        weight = "bold" if late else "normal"
        body.append(
            f'<text class="share" data-site="{key}" x="{x_of(max(p90, signed["median_minutes"])) + 6:.1f}" '
            f'y="{y + 24}" fill="{_LATE if late else _INK}" font-weight="{weight}">{format_share(share)}</text>'
        )
        lines.append(f"{name}: {labels['median']} {format_minutes(signed['median_minutes'], labels)}, {labels['p90']} "
                     f"{format_minutes(p90, labels)}, {labels['within_deadline']} {format_share(share)}.")
    return _svg("sites", title, " ".join(lines), bottom + 60, body)


def _svg(kind: str, title: str, desc: str, height: float, body: Sequence[str]) -> str:
    ident = f"chart-{kind}-{hashlib.sha1(title.encode()).hexdigest()[:8]}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-{kind}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="{WIDTH}" height="{height:.0f}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}">'
        f'<title id="{ident}-title">{_text(title)}</title><desc id="{ident}-desc">{_text(desc)}</desc>'
        f'<rect width="100%" height="100%" fill="#ffffff"/>{"".join(body)}</svg>'
    )


def _empty(title: str, labels: dict[str, str], kind: str) -> str:
    message = _text(labels["no_data"])
    return _svg(kind, title, labels["no_data"], 140, [
        _title(title),
        f'<text class="empty" x="{WIDTH / 2}" y="90" text-anchor="middle" font-size="{TITLE_SIZE}" fill="{_MUTED}">'
        f"{message}</text>",
    ])


def _title(title: str) -> str:
    return f'<text x="16" y="30" font-size="{TITLE_SIZE}" font-weight="bold" fill="{_INK}">{_text(title)}</text>'


def _legend(y: float, entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """Swatches (a block for bars, a stroke for lines) and their captions in one row."""
    parts, x = [], 16.0
    for colour, caption, kind in entries:
        if kind == "bar":
            parts.append(f'<rect x="{x:.1f}" y="{y - 12}" width="16" height="14" fill="{colour}"/>')
        else:
            parts.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y - 5}" y2="{y - 5}" stroke="{colour}" '
                         'stroke-width="3"/>')
        parts.append(f'<text x="{x + 24:.1f}" y="{y}" fill="{_INK}">{_text(caption)}</text>')
        x += 24 + text_width(caption, FONT_SIZE) + 22
    return parts


def _line(kind: str, points: Sequence[tuple[float, float | None]], colour: str) -> list[str]:
    """A polyline broken where a value is missing, with a dot on every point (a lone day still shows)."""
    path, pen_down = [], False
    for x, y in points:
        if y is None:
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
    dots = [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>' for x, y in points if y is not None]
    return [f'<path class="line {kind}" d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2.5"/>', *dots]


def _measure(text: str) -> float:
    return text_width(text, FONT_SIZE)


def _text(value: Any) -> str:
    """Text for SVG content or a quoted attribute: control characters dropped (not allowed in XML), markup escaped."""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)
