"""Reading-queue benchmark: 100,000 open tasks on SQLite and on PostgreSQL.

A synthetic alliance is built in a throw-away database: one province, four
county reading centres (two push, two pull), fifteen township clinics and
thirty village stations (50 sites), 200 readers at the counties with
realistic modality mixes, experts and weekly rosters (plus a few supervisor
overrides), one supervisor per county. Then ``--tasks`` open reading tasks
(100,000 by default), each with its patient and study rows and its timeline
events, are inserted with SQLAlchemy Core executemany: sources send CT, DX, CR
and 12-lead ECG (villages only DX and ECG), 3% STAT, 15% URGENT, the rest
ROUTINE, opened up to 1.15 times their allowed time ago (about 13% overdue),
assigned to a qualified reader at the push centres, some claimed (a few with
lapsed leases). Their service-level state (reminders sent, escalated,
breached, next milestone) is what a sweep ``--gap-minutes`` before "now"
would have left, so the measured sweep finds every milestone crossed in that
gap, as after a worker restart. "Now" is fixed with ``telerad.clock`` at a
Tuesday 10:30 in Asia/Shanghai, when day shifts are on duty. PostgreSQL is
ANALYZEd after loading, as autovacuum would; SQLite is left as the
application leaves it.

What is measured, on each backend:

* one service-level sweep (``reading_queue.sla.sweep`` with the in-app
  notifier, committed), and how many tasks it acted on;
* picking the assignee of a new task (``reading_queue.assignment.pick``),
  ``--picks`` times over random centres, modalities and priorities;
* ``GET /api/v1/worklist`` and ``GET /api/v1/turnaround`` (default
  parameters) for a CT reader of a pull centre and for a county supervisor,
  ``--requests`` times each through Flask's test client with a bearer token,
  after a few unmeasured warm-up requests.

Printed: a table of medians and 95th percentiles (and the SQL statements one
operation issues) per backend beside the target. ``--profile`` adds cProfile's
top functions per operation.

Run from the repository root::

    .venv/bin/python -m bench.queue [--backend sqlite|postgresql|both] [--tasks 100000]

PostgreSQL is reached through ``--postgres-url`` (default: ``TELERAD_TEST_POSTGRES``
or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), where a throw-away
database is created and dropped at the end; SQLite lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import io
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, insert, select, text
from sqlalchemy.orm import sessionmaker

from pacs_node.index import Patient, Study, StudyState
from reading_queue.assignment import DutyShift, pick
from reading_queue.notify import InAppNotifier
from reading_queue.sla import sweep
from reading_queue.turnaround import percentile
from reading_queue.tasks import ReadingTask, TaskEvent, TaskState, due, milestones, next_milestone
from telerad import clock
from telerad.config import Config, ReadingSection
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare
from telerad.sites import Site
from telerad.users import User, create_token, hash_password
from telerad.web import create_app

NOW = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)  # Tuesday 10:30 in Asia/Shanghai
COUNTIES = 4
PUSH_COUNTIES = 2
TOWNSHIPS = 15
VILLAGES_PER_TOWNSHIP = 2
READERS = 200
SEED = 20260310
CHUNK = 5000
WARM_UP = 5
POSTGRES_ADMIN_URL = os.environ.get("TELERAD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Reader profiles: (modalities, expert, weight).
PROFILES = ((("CT", "CR", "DX"), False, 40), (("CR", "DX"), False, 20), (("CT", "CR", "DX"), True, 10),
            (("ECG",), False, 25), (("ECG",), True, 5))
#: Weekly rosters: (shifts as (days, start, end), weight); no shift means always on duty.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
ALL_DAYS = (*WEEKDAYS, "sat", "sun")
ROSTERS = (((), 25), (((WEEKDAYS, "08:00", "18:00"),), 50),
           (((ALL_DAYS, "18:00", "24:00"), (ALL_DAYS, "00:00", "08:00")), 25))
#: What each level of site sends: (modality, weight).
SENT = {"township": (("CT", 30), ("DX", 35), ("CR", 5), ("ECG", 30)), "village": (("DX", 40), ("ECG", 60))}
PRIORITY_MIX = (("STAT", 3), ("URGENT", 15), ("ROUTINE", 82))
OVERDUE_SPAN = 1.15  # tasks opened up to this many allowed times ago
CLAIMED_SHARE = 0.005
TARGETS = {"sweep": "< 2 s", "pick": "< 5 ms", "http": "p95 < 100 ms (PostgreSQL)"}


@dataclass(frozen=True)
class Alliance:
    """The synthetic alliance as stored: the configuration and who reads what where."""

    config: Config
    sources: list[tuple[int, str]]  # (site id, level) of every township and village
    centre_of: dict[int, int]  # source site id → county site id
    centres: list[int]  # county site ids
    push: set[int]  # county site ids in push mode
    readers: dict[tuple[int, str], list[tuple[int, str]]]  # (centre, modality) → [(user id, name)]


@dataclass
class Samples:
    """Seconds per run of one operation, the SQL statements all runs issued, and what was done."""

    seconds: list[float] = field(default_factory=list)
    statements: int = 0
    note: str = ""


# --- the synthetic alliance --------------------------------------------------------------------


def weighted(rng: random.Random, choices: Sequence[tuple[Any, int]]) -> Any:
    """One of ``choices`` (value, weight) drawn by weight."""
    return rng.choices([value for value, _ in choices], weights=[weight for _, weight in choices])[0]


def alliance_config(data_dir: Path, database_url: str, rng: random.Random) -> Config:
    """The configuration of the alliance: 50 sites, 200 readers with rosters, 4 supervisors."""
    sites: list[dict[str, Any]] = [{"code": "PROV", "name": "省人民医院", "level": "province"}]
    sites += [{"code": f"CNTY-{c}", "name": f"县{c}远程诊断中心", "level": "county", "parent": "PROV"}
              for c in range(1, COUNTIES + 1)]
    for t in range(1, TOWNSHIPS + 1):
        sites.append({"code": f"TS-{t:02d}", "name": f"镇{t}卫生院", "level": "township",
                      "parent": f"CNTY-{(t - 1) % COUNTIES + 1}"})
        sites += [{"code": f"VIL-{t:02d}-{v}", "name": f"村{t}-{v}卫生室", "level": "village", "parent": f"TS-{t:02d}"}
                  for v in range(1, VILLAGES_PER_TOWNSHIP + 1)]
    users: list[dict[str, Any]] = []
    duty: list[dict[str, Any]] = []
    for n in range(READERS):
        modalities, expert, _ = weighted(rng, [(p, p[2]) for p in PROFILES])
        name = f"reader-{n + 1:03d}"
        users.append({"name": name, "role": "reader", "site": f"CNTY-{n % COUNTIES + 1}",
                      "modalities": list(modalities), "expert": expert})
        duty += [{"user": name, "days": list(days), "start": start, "end": end}
                 for days, start, end in weighted(rng, ROSTERS)]
    users += [{"name": f"supervisor-{c}", "role": "supervisor", "site": f"CNTY-{c}"} for c in range(1, COUNTIES + 1)]
    reading = {
        "centres": [{"site": f"CNTY-{c}", "mode": "push" if c <= PUSH_COUNTIES else "pull"}
                    for c in range(1, COUNTIES + 1)],
        "routing": [{"modality": "ECG", "priority": "ROUTINE", "readers": "general"}],
        "duty": duty,
    }
    return Config.model_validate({
        "service": {"data_dir": str(data_dir)}, "database": {"url": database_url},
        "sites": sites, "users": users, "reading": reading,
    })


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` with Core executemany, in chunks."""
    for start in range(0, len(rows), CHUNK):
        connection.execute(insert(table), rows[start : start + CHUNK])


def load_alliance(config: Config, engine: Engine, sessions: sessionmaker, rng: random.Random) -> Alliance:
    """Migrate, sync the sites (``prepare``), insert the users in bulk and a few roster overrides.

    Users are inserted directly, all with one password hash: 204 Argon2 hashes would only time Argon2.
    """
    prepare(config.model_copy(update={"users": ()}), sessions)
    password_hash = hash_password(uuid.uuid4().hex)
    with engine.begin() as connection:
        site_ids = dict(connection.execute(select(Site.code, Site.id)).all())
        insert_rows(connection, User.__table__, [
            {"name": user.name, "display_name": user.name, "role": user.role, "site_id": site_ids[user.site],
             "modalities": ",".join(user.modalities), "expert": user.expert, "password_hash": password_hash,
             "active": True, "created_at": NOW - timedelta(days=400)}
            for user in config.users
        ])
        readers = connection.execute(
            select(User.id, User.name, User.site_id, User.modalities_csv).where(User.role == "reader")
        ).all()
        insert_rows(connection, DutyShift.__table__, [
            {"user_id": user_id, "starts_at": NOW - timedelta(hours=rng.uniform(1, 30)),
             "ends_at": NOW + timedelta(hours=rng.uniform(1, 30)), "on_duty": rng.random() < 0.5,
             "set_by": "supervisor-1"}
            for user_id, *_ in rng.sample(readers, 20)
        ])
        parents = dict(connection.execute(select(Site.id, Site.parent_id)).all())
        levels = dict(connection.execute(select(Site.id, Site.level)).all())
    by_centre: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for user_id, name, site_id, modalities in readers:
        for modality in modalities.split(","):
            by_centre.setdefault((site_id, modality), []).append((user_id, name))
    sources = [(site_id, level) for site_id, level in levels.items() if level in ("township", "village")]
    centre_of = {}
    for site_id, _ in sources:
        centre = site_id
        while levels[centre] != "county":
            centre = parents[centre]
        centre_of[site_id] = centre
    centres = sorted(site_id for site_id, level in levels.items() if level == "county")
    push = {site_ids[c.site] for c in config.reading.centres if c.mode == "push"}
    return Alliance(config, sorted(sources), centre_of, centres, push, by_centre)


def load_tasks(alliance: Alliance, engine: Engine, count: int, gap: timedelta, rng: random.Random) -> None:
    """Insert ``count`` open tasks with their patients, studies and timeline events.

    Each task's service-level state is what a sweep at ``NOW - gap`` would have left.
    """
    policy = alliance.config.reading
    swept_at = NOW - gap
    patients, studies, tasks, events = [], [], [], []
    source_weights = [3 if level == "township" else 1 for _, level in alliance.sources]
    for n in range(1, count + 1):
        source, level = rng.choices(alliance.sources, weights=source_weights)[0]
        centre = alliance.centre_of[source]
        modality, priority = weighted(rng, SENT[level]), weighted(rng, PRIORITY_MIX)
        allowed = policy.turnaround_minutes[priority]
        opened_at = NOW - timedelta(minutes=allowed * rng.uniform(0, OVERDUE_SPAN))
        uid = f"1.2.826.0.1.3680043.10.543.{SEED}.{n}"
        readers = alliance.readers.get((centre, modality), [])
        assignee = rng.choice(readers) if centre in alliance.push and readers else None
        holder = (assignee or rng.choice(readers)) if readers and rng.random() < CLAIMED_SHARE else None
        task = ReadingTask(opened_at=opened_at, due_at=due(policy, "read", priority, opened_at))
        crossed = [(name, when) for name, when in milestones(policy, task) if when <= swept_at]
        task.reminders_sent = sum(1 for name, _ in crossed if name.startswith("reminder-"))
        task.escalated_at = next((when for name, when in crossed if name == "escalation"), None)
        task.breached_at = next((when for name, when in crossed if name == "breach"), None)
        reason = None
        if task.breached_at is not None:
            reason = (f"claimed by {holder[1]} but not signed in time" if holder
                      else f"assigned to {assignee[1]} but not claimed in time" if assignee
                      else "not claimed by any reader in time")
        patients.append({"id": n, "issuer": f"site-{source}", "patient_id": f"P{n:07d}", "name": f"BENCH^{n}",
                         "sex": rng.choice("MF"), "birth_date": f"{rng.randint(1935, 2020)}0101", "person_key": None,
                         "site_id": source, "created_at": opened_at, "updated_at": opened_at})
        studies.append({"id": n, "study_uid": uid, "patient_pk": n, "site_id": source, "calling_ae": f"AE{source}",
                        "accession_number": f"A{n:08d}", "study_id": str(n), "study_date": f"{opened_at:%Y%m%d}",
                        "study_time": f"{opened_at:%H%M%S}", "description": f"{modality} bench",
                        "referring_physician": "", "modalities": modality, "priority": "", "num_series": 1,
                        "num_instances": 12 if modality == "ECG" else 200, "size_bytes": 50_000_000,
                        "state": StudyState.COMPLETE, "update_pending": False, "first_received_at": opened_at,
                        "last_received_at": opened_at, "completed_at": opened_at})
        tasks.append({
            "id": n, "dedupe_key": f"read:{uid}", "kind": "read", "parent_id": None, "study_pk": n,
            "study_uid": uid, "service": "ecg" if modality == "ECG" else "imaging", "modality": modality,
            "source_site_id": source, "centre_site_id": centre, "priority": priority, "priority_source": "default",
            "opened_at": opened_at, "due_at": task.due_at,
            "state": TaskState.CLAIMED if holder else TaskState.OPEN,
            "assignee_id": assignee[0] if assignee else None, "holder_id": holder[0] if holder else None,
            "lease_until": NOW + timedelta(minutes=rng.uniform(-5, 20)) if holder else None,
            "reminders_sent": task.reminders_sent, "next_check_at": next_milestone(policy, task),
            "escalated_at": task.escalated_at, "breached_at": task.breached_at, "breach_reason": reason,
            "signed_at": None, "signed_by_id": None,
        })
        created = {"priority": priority, "priority_source": "default", "due_at": task.due_at.isoformat()}
        events.append({"task_id": n, "at": opened_at, "actor": "system", "kind": "created", "detail": created})
        if assignee:
            events.append({"task_id": n, "at": opened_at, "actor": "system", "kind": "assigned",
                           "detail": {"user": assignee[1], "mode": "push"}})
        if holder:
            events.append({"task_id": n, "at": min(opened_at + timedelta(minutes=5), NOW), "actor": holder[1],
                           "kind": "claimed", "detail": {}})
    with engine.begin() as connection:
        for table, rows in ((Patient.__table__, patients), (Study.__table__, studies),
                            (ReadingTask.__table__, tasks), (TaskEvent.__table__, events)):
            insert_rows(connection, table, rows)
        if engine.dialect.name == "postgresql":
            for table in ("patients", "studies", "reading_tasks"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {count})"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))


# --- measuring -----------------------------------------------------------------------------------


class Meter:
    """Counts the SQL statements of every engine, and profiles measured blocks when asked."""

    def __init__(self, profile: bool) -> None:
        self.statements = 0
        self.profiles: dict[str, cProfile.Profile] = {}
        self.profile = profile
        event.listen(Engine, "before_cursor_execute", self._count)

    def _count(self, *_args: object) -> None:
        self.statements += 1

    def close(self) -> None:
        """Stop counting."""
        event.remove(Engine, "before_cursor_execute", self._count)

    @contextlib.contextmanager
    def measure(self, name: str, samples: Samples) -> Iterator[None]:
        """Time the block into ``samples`` (and profile it under ``name`` with ``--profile``)."""
        profiler = self.profiles.setdefault(name, cProfile.Profile()) if self.profile else None
        statements = self.statements
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        try:
            yield
        finally:
            samples.seconds.append(time.perf_counter() - started)
            if profiler:
                profiler.disable()
            samples.statements += self.statements - statements


def measure_sweep(sessions: sessionmaker, policy: ReadingSection, meter: Meter) -> Samples:
    """One service-level sweep at ``NOW``, committed; notes how many tasks it acted on."""
    samples = Samples()
    with sessions() as session:
        due_now = session.scalar(
            select(func.count()).select_from(ReadingTask)
            .where(ReadingTask.state.in_((TaskState.OPEN, TaskState.CLAIMED)), ReadingTask.next_check_at <= NOW)
        )
    with sessions() as session, meter.measure("sweep", samples), session.begin():
        result = sweep(session, policy, InAppNotifier(), NOW)
    acted = set(result.expired) | set(result.reminded) | set(result.escalated) | set(result.breached)
    samples.note = (f"acted on {len(acted)} tasks ({len(result.expired)} leases expired, {len(result.reminded)} "
                    f"reminded, {len(result.escalated)} escalated, {len(result.breached)} breached); {due_now} had "
                    "crossed a milestone, a sweep takes one batch of them")
    return samples


def measure_picks(sessions: sessionmaker, alliance: Alliance, picks: int, meter: Meter, rng: random.Random) -> Samples:
    """``pick`` for ``picks`` new tasks of random centres, modalities and priorities."""
    samples = Samples()
    chosen = 0
    for n in range(picks):
        centre = rng.choice(alliance.centres)
        modality, priority = weighted(rng, SENT["township"]), weighted(rng, PRIORITY_MIX)
        task = ReadingTask(kind="read", modality=modality, priority=priority, centre_site_id=centre,
                           opened_at=NOW, due_at=due(alliance.config.reading, "read", priority, NOW),
                           state=TaskState.OPEN, dedupe_key=f"read:bench-pick-{n}")
        with sessions() as session, meter.measure("pick", samples):
            chosen += pick(session, alliance.config.reading, task, NOW) is not None
    samples.note = f"{chosen} of {picks} picks found an eligible reader"
    return samples


def measure_get(client: FlaskClient, path: str, token: str, requests: int, name: str, meter: Meter) -> Samples:
    """``requests`` GETs of ``path`` with a bearer token, after a few unmeasured ones."""
    headers = {"Authorization": f"Bearer {token}"}
    samples = Samples()
    for _ in range(WARM_UP):
        response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    for _ in range(requests):
        with meter.measure(name, samples):
            response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    body = response.get_json()
    samples.note = f"{len(response.get_data())} bytes; {describe(body)}"
    return samples


def describe(body: Any) -> str:
    """A short summary of a JSON answer: its keys and the length of its lists."""
    if isinstance(body, list):
        return f"list of {len(body)}"
    if isinstance(body, dict):
        return ", ".join(f"{key}: {len(value)} items" if isinstance(value, list) else key
                         for key, value in body.items())
    return type(body).__name__


def measure_api(config: Config, sessions: sessionmaker, requests: int, meter: Meter) -> dict[str, Samples]:
    """Worklist and turnaround, for a reader and a supervisor, through the test client."""
    with sessions() as session, session.begin():
        reader = session.scalars(
            select(User).join(Site, Site.id == User.site_id)
            .where(User.role == "reader", User.modalities_csv == "CT,CR,DX", User.expert.is_(False),
                   Site.code == f"CNTY-{COUNTIES}")
            .order_by(User.name)
        ).first()
        reader_token = create_token(session, reader.name)
        supervisor_token = create_token(session, "supervisor-1")
    app = create_app(config)
    try:
        client = app.test_client()
        return {
            f"{path}_{who}": measure_get(client, f"/api/v1/{path}", token, requests, f"{path}, {who}", meter)
            for path in ("worklist", "turnaround")
            for who, token in (("reader", reader_token), ("supervisor", supervisor_token))
        }
    finally:
        app.extensions["telerad.sessions"].kw["bind"].dispose()


# --- backends ------------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(backend: str, work: Path, admin_url: str) -> Iterator[str]:
    """A new, empty database for ``backend``, dropped (or deleted) afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{work / 'telerad.db'}"
        return
    name = f"telerad_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def run_backend(backend: str, args: argparse.Namespace, meter: Meter) -> dict[str, Samples]:
    """Build the alliance and tasks on ``backend`` and measure every operation."""
    rng = random.Random(SEED)
    work = Path(tempfile.mkdtemp(prefix="telerad-bench-queue-"))
    try:
        with throwaway_database(backend, work, args.postgres_url) as url:
            config = alliance_config(work / "data", url, rng)
            engine = make_engine(url)
            sessions = make_session_factory(engine)
            try:
                started = time.perf_counter()
                alliance = load_alliance(config, engine, sessions, rng)
                load_tasks(alliance, engine, args.tasks, timedelta(minutes=args.gap_minutes), rng)
                print(f"{backend}: {args.tasks} tasks loaded in {time.perf_counter() - started:.1f} s", flush=True)
                results = {"sweep": measure_sweep(sessions, config.reading, meter)}
                print(f"{backend}: sweep {results['sweep'].seconds[0]:.2f} s ({results['sweep'].note})", flush=True)
                results["pick"] = measure_picks(sessions, alliance, args.picks, meter, rng)
                print(f"{backend}: {args.picks} picks measured", flush=True)
                results |= measure_api(config, sessions, args.requests, meter)
                print(f"{backend}: API measured", flush=True)
                return results
            finally:
                engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------


def cell(samples: Samples | None, single: bool) -> str:
    """A table cell: seconds for a one-off, median / p95 milliseconds otherwise; SQL statements per run."""
    if samples is None:
        return "-"
    if single:
        return f"{samples.seconds[0]:.2f} s, {samples.statements} q"
    per_run = samples.statements / len(samples.seconds) if samples.seconds else 0
    median, p95 = statistics.median(samples.seconds) * 1000, percentile(samples.seconds, 0.95) * 1000
    return f"{median:.1f} / {p95:.1f} ms, {per_run:.0f} q"


def report(results: dict[str, dict[str, Samples]], args: argparse.Namespace) -> None:
    """Print the table: metric, SQLite, PostgreSQL, target; then the notes."""
    rows = (
        ("sweep", "service-level sweep", TARGETS["sweep"]),
        ("pick", f"pick (p50 / p95 of {args.picks})", TARGETS["pick"]),
        ("worklist_reader", f"GET worklist, reader (p50 / p95 of {args.requests})", TARGETS["http"]),
        ("worklist_supervisor", f"GET worklist, supervisor (p50 / p95 of {args.requests})", TARGETS["http"]),
        ("turnaround_reader", f"GET turnaround, reader (p50 / p95 of {args.requests})", TARGETS["http"]),
        ("turnaround_supervisor", f"GET turnaround, supervisor (p50 / p95 of {args.requests})", TARGETS["http"]),
    )
    sqlite, postgresql = results.get("sqlite", {}), results.get("postgresql", {})
    print(f"\n{args.tasks} open tasks, 50 sites, {READERS} readers; q = SQL statements per operation\n")
    print(f"{'metric':48}{'SQLite':>24}{'PostgreSQL':>24}   target")
    print("-" * 125)
    for key, label, target in rows:
        single = key == "sweep"
        print(f"{label:48}{cell(sqlite.get(key), single):>24}{cell(postgresql.get(key), single):>24}   {target}")
    print()
    for backend, measured in results.items():
        for key, label, _ in rows:
            if measured[key].note:
                print(f"{backend}, {label}: {measured[key].note}")


def print_profiles(meter: Meter, backend: str, top: int) -> None:
    """cProfile's top functions (cumulative time) for each measured operation."""
    for name, profiler in meter.profiles.items():
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(top)
        print(f"\n=== profile: {backend}, {name} ===\n{out.getvalue()}")
    meter.profiles.clear()


# --- entry point ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both",
                        help="which database to measure (default: both)")
    parser.add_argument("--tasks", type=int, default=100_000, help="open tasks (default: 100000)")
    parser.add_argument("--picks", type=int, default=200, help="assignee picks measured (default: 200)")
    parser.add_argument("--requests", type=int, default=100, help="requests per API call measured (default: 100)")
    parser.add_argument("--gap-minutes", type=float, default=15.0,
                        help="time since the previous sweep: how much the measured sweep catches up (default: 15)")
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL,
                        help="a PostgreSQL database to create the throw-away one from")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per operation")
    args = parser.parse_args(argv)
    if min(args.tasks, args.picks, args.requests) < 1 or args.gap_minutes <= 0:
        parser.error("--tasks, --picks, --requests and --gap-minutes must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Measure each chosen backend in turn and print the table."""
    args = parse_args(argv)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    meter = Meter(args.profile)
    clock.set_source(lambda: NOW)
    results: dict[str, dict[str, Samples]] = {}
    try:
        for backend in backends:
            results[backend] = run_backend(backend, args, meter)
            if args.profile:
                print_profiles(meter, backend, 25)
    finally:
        clock.set_source(None)
        meter.close()
    report(results, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
