"""The ``telerad`` command line (click command groups)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telerad.config import Config, ConfigError, load_config
from telerad.db import make_engine, make_session_factory, upgrade
from telerad.users import MODALITIES, ROLES, UserError, add_user, create_token

if TYPE_CHECKING:
    from reports.canonical import Verification


def _load(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.obj["config_path"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _sessions(config: Config) -> sessionmaker:
    return make_session_factory(make_engine(config.database_url))


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    return stop


@click.group()
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), envvar="TELERAD_CONFIG",
    default="config.yaml", show_default=True, help="Configuration file (keys overridable by TELERAD_<SECTION>_<KEY>).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """Telerad: tele-imaging and remote diagnosis for a medical alliance."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("pynetdicom", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    ctx.obj = {"config_path": config_path}


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run everything on one machine: DICOM node, web, worker (and the embedded Redis if no URL is set)."""
    from telerad.supervisor import serve_all

    serve_all(_load(ctx), ctx.obj["config_path"], _stop_on_signals())


@main.command()
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Receiver processes sharing the port.")
@click.pass_context
def dicom(ctx: click.Context, workers: int | None) -> None:
    """Run the DICOM node alone (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."""
    from pacs_node.node import run

    config = _load(ctx)
    count = workers or config.dicom.workers
    click.echo(f"DICOM node {config.dicom.ae_title} listening on {config.dicom.host}:{config.dicom.port} ({count} receiver(s))")
    run(config, count, _stop_on_signals())


@main.command()
@click.pass_context
def web(ctx: click.Context) -> None:
    """Run the web application under a production WSGI server (waitress)."""
    from waitress import serve as waitress_serve

    from telerad.web import create_app

    config = _load(ctx)
    click.echo(f"web answering at http://{config.web.host}:{config.web.port}/")
    waitress_serve(create_app(config), host=config.web.host, port=config.web.port, threads=8, ident="telerad")


@main.command()
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
@click.pass_context
def worker(ctx: click.Context, burst: bool) -> None:
    """Run a job worker with the scheduler against TELERAD_REDIS_URL."""
    from telerad.worker import run_worker

    config = _load(ctx)
    if not config.redis.url:
        raise click.ClickException("redis.url: a worker needs a Redis URL (set TELERAD_REDIS_URL)")
    run_worker(config, burst=burst)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the schema to the newest version."""
    config = _load(ctx)
    upgrade(config.database_url)
    click.echo("database is up to date")


@main.group()
def user() -> None:
    """Users of the alliance."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user does in Telerad.")
@click.option("--site", "site_code", required=True, help="Code of the user's site, e.g. CNTY.")
@click.option("--modalities", default="", help=f"Readers: comma-separated, of {','.join(MODALITIES)}.")
@click.option("--display-name", default="", help="Name shown in the interface.")
@click.option("--expert", is_flag=True, help="A senior reader: kept for hard cases, not routine repeat work.")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
@click.pass_context
def user_add(
    ctx: click.Context,
    name: str,
    role: str,
    site_code: str,
    modalities: str,
    display_name: str,
    expert: bool,
    password_stdin: bool,
) -> None:
    """Add a user NAME with a role, a site and (for readers) modalities."""
    password = sys.stdin.readline().rstrip("\r\n")
    wanted = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    sessions = _sessions(_load(ctx))
    try:
        with sessions() as session, session.begin():
            add_user(session, name, role, site_code, password, wanted, display_name, actor="cli", expert=expert)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} added ({role} at {site_code})")


@main.group()
def token() -> None:
    """API bearer tokens."""


@token.command("create")
@click.argument("name")
@click.pass_context
def token_create(ctx: click.Context, name: str) -> None:
    """Create a bearer token for user NAME and print it (it is shown only once)."""
    sessions = _sessions(_load(ctx))
    try:
        with sessions() as session, session.begin():
            issued = create_token(session, name, actor="cli")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(issued)


@main.group()
def report() -> None:
    """Signed reports."""


@report.command("verify")
@click.option("--study", "study_uids", multiple=True, metavar="UID", help="Study Instance UID (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every signature in the archive.")
@click.pass_context
def report_verify(ctx: click.Context, study_uids: tuple[str, ...], every: bool) -> None:
    """Check report signatures: the detached signature over the canonical form, the signer's certificate, every
    signed field against the database now, and the signed PDF. Exits 1 naming each changed field if any fails."""
    if not study_uids and not every:
        raise click.UsageError("give --study UID (repeatable) or --all")
    config = _load(ctx)
    checked = failed = 0
    with _sessions(config)() as session:
        for result in _verifications(session, config, study_uids, every):
            checked += 1
            failed += not result.ok
            click.echo(
                f"{'OK  ' if result.ok else 'FAIL'} study {result.study_uid} signature {result.signature_id} "
                f"({result.role}, {result.signer}, {result.signed_at.isoformat()})"
            )
            for line in result.lines():
                click.echo(f"     {line}")
    click.echo(f"{checked} signature(s) checked, {failed} failed")
    if failed:
        ctx.exit(1)


@report.command("monthly")
@click.option("--centre", "centre_code", required=True, help="Code of the county reading centre, e.g. CNTY.")
@click.option("--month", required=True, metavar="YYYY-MM", help="The calendar month, in the service's time zone.")
@click.option("--language", type=click.Choice(("zh", "en")), default=None, help="Language (default: service.language).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PDF file to write (default: telerad-CODE-YYYY-MM.pdf here).")
@click.pass_context
def report_monthly(ctx: click.Context, centre_code: str, month: str, language: str | None, output: Path | None) -> None:
    """Write the reading centre's monthly turnaround report for the province (PDF): every task of the centre
    signed, delivered or late in the calendar month, and its readers' scorecards."""
    from reading_queue.tasks import ReadingTask
    from reading_queue.turnaround import Filters, figures
    from reports.monthly import monthly_pdf
    from reports.scorecards import scorecards
    from telerad import clock
    from telerad.sites import Site, subtree_ids

    try:
        first = datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise click.BadParameter("write the month as YYYY-MM, e.g. 2026-03", param_hint="--month") from None
    config = _load(ctx)
    timezone = config.reading.timezone
    since = first.replace(tzinfo=ZoneInfo(timezone))
    until = (since + timedelta(days=32)).replace(day=1)
    language = language or config.service.language
    at = clock.now()
    with _sessions(config)() as session:
        centre = session.scalar(select(Site).where(Site.code == centre_code))
        if centre is None:
            raise click.ClickException(f"--centre: no site has the code {centre_code!r}")
        numbers = figures(session, Filters(centre=centre_code, since=since, until=until),
                          ReadingTask.centre_site_id == centre.id, at, timezone, None)
        cards = scorecards(session, subtree_ids(session, centre.id), since, until)
        name = (centre.name_en or centre.name) if language == "en" else centre.name
    path = output or Path(f"telerad-{centre_code}-{first:%Y-%m}.pdf")
    path.write_bytes(monthly_pdf(numbers, None, cards, centre_name=name, month=f"{first:%Y-%m}", language=language,
                                 generated_at=at, timezone=timezone))
    click.echo(f"monthly report of {centre_code} for {first:%Y-%m} written to {path}")


def _verifications(
    session: Session, config: Config, study_uids: tuple[str, ...], every: bool
) -> Iterator[Verification]:
    from reports.signing import verify_all, verify_study

    if every:
        yield from verify_all(session, config)
        return
    for study_uid in study_uids:
        try:
            found = verify_study(session, config, study_uid)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        if not found:
            raise click.ClickException(f"study {study_uid} has no signed report")
        yield from found
