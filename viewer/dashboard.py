"""The supervisors' dashboard (县级看板): the live board, turnaround over a period, quality control, exports.

A county supervisor sees their centre and the stations below it; a provincial supervisor sees every county and
may pick one. The figures are those of ``GET /api/v1/turnaround`` and ``GET /api/v1/backlog``
(:mod:`reading_queue.turnaround`, :mod:`reading_queue.live`); every table exports to CSV and all of them to
one Excel workbook (:mod:`viewer.export`), the charts are SVG drawn here (:mod:`viewer.charts`), and the month's
figures make the county's PDF report for the province (:mod:`reports.monthly`). Acting — reassigning, changing
a priority, putting a reader on or off duty — goes through the JSON API from ``static/dashboard.js``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select
from sqlalchemy.orm import Session

from reading_queue import live
from reading_queue.access import visible_tasks
from reading_queue.tasks import MODALITIES, PRIORITIES
from reading_queue.turnaround import BREACHES_SHOWN, DASHBOARD_DAYS, Filters, figures, scope
from reports.monthly import monthly_pdf
from reports.scorecards import scorecards
from telerad import audit, clock
from telerad.auth import caller, user_in
from telerad.sites import Site, subtree_ids
from telerad.users import User
from viewer import charts, export
from viewer.pages import HOME_OF_ROLE
from viewer.worklist import language, local_time, site_name

dashboard = Blueprint("dashboard", __name__)

SUPERVISING_ROLES = ("supervisor", "admin")
MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """Whole days in the service's time zone, ``first`` to ``last`` inclusive."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def since(self) -> datetime:
        """The period's start: midnight before ``first``."""
        return datetime.combine(self.first, time(), self.zone)

    @property
    def until(self) -> datetime:
        """The period's end: midnight after ``last``."""
        return datetime.combine(self.last + timedelta(days=1), time(), self.zone)


def _policy_zone() -> ZoneInfo:
    return ZoneInfo(current_app.extensions["telerad.config"].reading.timezone)


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name) or ""
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def period_of_request(at: datetime) -> tuple[Period, str | None]:
    """The period asked for (``from``, ``to``: ISO dates), else the last 30 days; and why an asked one was
    refused (the page then shows the default with that message)."""
    zone = _policy_zone()
    today = at.astimezone(zone).date()
    default = Period(today - timedelta(days=DASHBOARD_DAYS - 1), today, zone)
    first, last = _date_arg("from"), _date_arg("to")
    if request.args.get("from") and first is None or request.args.get("to") and last is None:
        return default, _("Dates are written like 2026-03-01.")
    if first is None and last is None:
        return default, None
    first, last = first or (last or today) - timedelta(days=DASHBOARD_DAYS - 1), last or today
    if last < first:
        return default, _("The period ends before it begins.")
    if (last - first).days >= MAX_DAYS:
        return default, _("A period is at most a year.")
    return Period(first, last, zone), None


def filters_of_request(session: Session, user: User, period: Period) -> Filters:
    """The page's filters; unknown values are ignored (an old bookmark still opens the dashboard)."""
    visible = subtree_ids(session, user.site_id)
    codes = dict(session.execute(select(Site.code, Site.id)).all())

    def site_code(name: str) -> str | None:
        code = request.args.get(name)
        return code if code in codes and codes[code] in visible else None

    return Filters(
        site=site_code("site"),
        centre=site_code("centre"),
        modality=request.args.get("modality") if request.args.get("modality") in MODALITIES else None,
        priority=request.args.get("priority") if request.args.get("priority") in PRIORITIES else None,
        since=period.since,
        until=period.until,
    )


@contextmanager
def supervising() -> Iterator[tuple[Session, User]]:
    """One database transaction as the signed-in supervisor or administrator (403 for anyone else)."""
    with current_app.extensions["telerad.sessions"]() as session, session.begin():
        user = user_in(session)
        if user is None or user.role not in SUPERVISING_ROLES:
            abort(403)
        yield session, user


def _centre_ids(session: Session, user: User, filters: Filters) -> set[int]:
    """The sites the scorecards and the live board cover: the chosen centre's tree, else the supervisor's."""
    if filters.centre:
        return subtree_ids(session, session.scalar(select(Site.id).where(Site.code == filters.centre)))
    return subtree_ids(session, user.site_id)


@dataclass
class Board:
    """Everything the dashboard shows for one request."""

    period: Period
    filters: Filters
    figures: dict[str, Any]
    live: dict[str, Any]
    cards: list[dict[str, Any]]


def _board(
    session: Session, user: User, at: datetime, breaches_shown: int | None = BREACHES_SHOWN
) -> tuple[Board, str | None]:
    period, refused = period_of_request(at)
    filters = filters_of_request(session, user, period)
    config = current_app.extensions["telerad.config"]
    visible = visible_tasks(session, user)
    sites = _centre_ids(session, user, filters)
    numbers = figures(session, filters, visible, at, config.reading.timezone, breaches_shown,
                      current_app.extensions["telerad.figures_cache"])
    now_scope = scope(session, replace(filters, since=None, until=None), visible)
    board = live.board(session, config.reading, now_scope, sites, at)
    by_reader = {row["key"]: row["signed"] for row in numbers["groups"]["reader"]}
    cards = scorecards(session, sites, period.since, period.until, by_reader)
    return Board(period, filters, numbers, board, cards), refused


# --- labels ------------------------------------------------------------------------------------------------------


def interval_labels() -> dict[str, str]:
    """Each measured interval as people say it."""
    return {
        "assigned": _("To assignment"),
        "opened": _("To first opening"),
        "signed": _("To signed report"),
        "delivered": _("To delivery"),
    }


@dashboard.app_template_global()
def duration(minutes: float | None) -> str:
    """Minutes as ``2 h 05 min`` (or ``45 min``; days past 48 hours); a dash when unknown."""
    if minutes is None:
        return "—"
    whole = round(minutes)
    if whole >= 48 * 60:
        return _("{d} d {h} h").format(d=whole // 1440, h=(whole % 1440) // 60)
    if whole >= 60:
        return _("{h} h {m} min").format(h=whole // 60, m=f"{whole % 60:02d}")
    return _("{m} min").format(m=whole)


@dashboard.app_template_filter("fromiso")
def from_iso(value: str) -> datetime:
    """An ISO 8601 time from the figures back to a datetime (for :func:`viewer.worklist.local_time`)."""
    return datetime.fromisoformat(value)


@dashboard.app_template_global()
def share(value: float | None) -> str:
    """A share as a percentage with one decimal; a dash when unknown."""
    return "—" if value is None else f"{value * 100:.1f}%"


# --- pages -------------------------------------------------------------------------------------------------------


@dashboard.get("/dashboard")
@login_required
def page() -> Response | str:
    """The dashboard page."""
    if caller().role not in SUPERVISING_ROLES:
        return redirect(url_for(HOME_OF_ROLE[caller().role]))
    at = clock.now()
    with supervising() as (session, user):
        board, refused = _board(session, user, at)
        sites = _choices(session, user)
        readers = _readers(session, user)
        audit.record(session, user.name, "dashboard.viewed", "site", str(user.site_id),
                     since=board.period.since.isoformat(), until=board.period.until.isoformat())
    labels = export.default_labels()
    return render_template(
        "dashboard.html",
        board=board,
        refused=refused,
        at=at,
        sites=sites,
        readers=readers,
        intervals=interval_labels(),
        trend_svg=charts.trend_chart(board.figures["daily"], title=_("Signed reports per day"), labels=labels),
        sites_svg=charts.site_chart(board.figures["groups"]["site"], title=_("Time to signed report by site"),
                                    labels=labels),
        query=request.args.to_dict(),
        months=_months(at),
        local_time=local_time,
        site_name=site_name,
        modalities=MODALITIES,
        priorities=PRIORITIES,
        config={"backlog": url_for("reading_queue.backlog"), "reassign": url_for("reading_queue.reassign_task", task_id=0),
                "priority": url_for("reading_queue.change_priority", task_id=0), "duty": url_for("reading_queue.set_duty"),
                "timezone": str(board.period.zone)},
    )


def _choices(session: Session, user: User) -> list[dict[str, str]]:
    """The sites the supervisor may filter on, with their level (centres are the counties)."""
    visible = subtree_ids(session, user.site_id)
    rows = session.execute(select(Site.code, Site.name, Site.name_en, Site.level).where(Site.id.in_(visible)).order_by(Site.code))
    return [{"code": code, "name": site_name(name, name_en), "level": level} for code, name, name_en, level in rows]


def _readers(session: Session, user: User) -> list[dict[str, Any]]:
    """The readers a supervisor may give work to: active readers and consultants of their centre or below."""
    rows = session.scalars(
        select(User)
        .where(User.site_id.in_(subtree_ids(session, user.site_id)), User.role.in_(("reader", "consultant")),
               User.active.is_(True))
        .order_by(User.name)
    )
    return [{"name": reader.name, "display_name": reader.display_name or reader.name,
             "modalities": list(reader.modalities)} for reader in rows]


def _months(at: datetime) -> list[str]:
    """This month (so far) and the twelve before it, newest first (``YYYY-MM``), for the monthly report."""
    first = at.astimezone(_policy_zone()).date().replace(day=1)
    months = [first.strftime("%Y-%m")]
    for _step in range(12):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append(first.strftime("%Y-%m"))
    return months


@dashboard.get("/dashboard/export.<fmt>")
@login_required
def export_tables(fmt: str) -> Response:
    """The dashboard's tables: ``?table=NAME`` as CSV, or every table as one Excel workbook (``xlsx``)."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    at = clock.now()
    with supervising() as (session, user):
        board, _refused = _board(session, user, at, breaches_shown=None)  # every breach
        audit.record(session, user.name, "dashboard.exported", "site", str(user.site_id), format=fmt,
                     table=request.args.get("table"))
    labels = export.default_labels()
    tables = [*export.turnaround_tables(board.figures, labels), *export.live_tables(board.live, labels, str(board.period.zone)),
              export.scorecard_table(board.cards, labels)]
    stamp = f"{board.period.first:%Y%m%d}-{board.period.last:%Y%m%d}"
    if fmt == "xlsx":
        body = export.xlsx_bytes(tables, str(board.period.zone))
        return _download(body, f"telerad-dashboard-{stamp}.xlsx",
                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    wanted = request.args.get("table")
    table = next((table for table in tables if table.name == wanted), None)
    if table is None:
        abort(404)
    return _download(export.csv_bytes(table), f"telerad-{table.name}-{stamp}.csv", "text/csv; charset=utf-8")


@dashboard.get("/dashboard/monthly.pdf")
@login_required
def monthly() -> Response:
    """The county's monthly report for the province (PDF) for ``?month=YYYY-MM`` and ``?centre=CODE``."""
    at = clock.now()
    try:
        first = date.fromisoformat(f"{request.args.get('month', '')}-01")
    except ValueError:
        abort(400, _("Choose a month."))
    zone = _policy_zone()
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    period = Period(first, last, zone)
    with supervising() as (session, user):
        filters = replace(filters_of_request(session, user, period), site=None, modality=None, priority=None)
        centre = _centre_site(session, user, filters)
        filters = replace(filters, centre=centre.code)
        config = current_app.extensions["telerad.config"]
        numbers = figures(session, filters, visible_tasks(session, user), at, config.reading.timezone, None)
        cards = scorecards(session, subtree_ids(session, centre.id), period.since, period.until)
        audit.record(session, user.name, "dashboard.monthly_report", "site", centre.code, month=f"{first:%Y-%m}")
        name = site_name(centre.name, centre.name_en)
    body = monthly_pdf(numbers, None, cards, centre_name=name, month=f"{first:%Y-%m}", language=language(),
                       generated_at=at, timezone=str(zone))
    return _download(body, f"telerad-{centre.code}-{first:%Y-%m}.pdf", "application/pdf")


def _centre_site(session: Session, user: User, filters: Filters) -> Site:
    """The county the monthly report is about: the chosen centre, else the supervisor's own site."""
    if filters.centre:
        return session.scalar(select(Site).where(Site.code == filters.centre))
    return session.get(Site, user.site_id)


def _download(body: bytes, filename: str, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
