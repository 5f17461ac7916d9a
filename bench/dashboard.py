"""Dashboard benchmark: a province's year of history in PostgreSQL, and the supervisors' figures over HTTP.

Issue 6: ``--studies`` (1,000,000) studies, each with its patient, its reading task and the task's timeline,
sent by ``--sites`` (50) stations and read by ``--readers`` (200) readers over the year ending now; then the
latency of ``GET /api/v1/turnaround`` and of the supervisors' dashboard (``GET /dashboard``), median and 95th
percentile, against a target of 300 ms at the 95th percentile.

The alliance: one province (``PROV``, with the consultants and the provincial supervisor), three county reading
centres (``CNTY-1`` and ``CNTY-3`` push, ``CNTY-2`` pull; a supervisor each) and the stations below them, a third
township clinics (``TS-nn``), the rest village stations (``VIL-nn-mm``). Readers sit at the counties with the
modality mixes and experts of ``bench.queue``; one in twenty is a provincial consultant.

The history is generated inside PostgreSQL (``INSERT ... SELECT`` over ``generate_series`` and ``random()``),
in completion order, so ids and the physical order follow time as they do in service:

* arrivals: more on weekdays than at weekends, growing by half over the year, by a local (Asia/Shanghai) daily
  curve with the morning and afternoon peaks and a night trickle; townships send three times what a village
  sends: CT, DX, CR and ECG (villages only DX and ECG);
* priority: 5% STAT, 20% URGENT, 75% ROUTINE (the urgent ones marked by the station);
* completion to signature: log-normal per priority (medians 12 min, 40 min, 6 h) with 5% beyond the
  deadline (breached, with the reason the service-level clock gives); assignment (push: seconds after
  completion; pull: the claim, later), first opening and delivery (log-normal, median 2 min) in order;
* each task read by a qualified reader of its centre (some read more than others);
* what is not yet done by now is open or claimed, with its reminders, escalation, breach (overdue) and next
  check as the service-level clock leaves them: the live tail (some 900 tasks of 1,000,000, some overdue);
* timeline events: created, assigned (push), claimed, opened, escalated, breached, signed, report_delivered.

Foreign keys are not checked while loading (``session_replication_role = replica``: the rows are consistent by
construction; it needs a superuser); the tables are then VACUUM ANALYZEd, as autovacuum would have over a year.

What is measured: the web app as deployed (``telerad web``, waitress, in a subprocess) over HTTP with bearer
tokens of the provincial supervisor (sees everything) and of ``CNTY-1``'s supervisor, for several periods of whole
local days up to the day the data ends (the API's ``since`` and ``until``, the page's ``from`` and ``to``) and
filters, in two modes: ``computed``, the app without Redis, so that every request computes its figures (what a
miss of the figures cache costs), and ``cached``, the app with Redis (``reading_queue.figures_cache`` keeps the
figures a minute), after a first request filled the cache; the bench's Redis database (14) is emptied first.
``--requests`` requests per case after a few unmeasured ones, one client, then four at once sharing as many.
The whole year is reported apart: it is not the target, and taking seconds a request it gets at most five
requests, one client, one EXPLAIN. A path that answers 404 is skipped (the dashboard page may not exist yet).
Beside each case, the peer: the PostgreSQL execution time (``EXPLAIN ANALYZE``) of the SQL statements the same
request issues when computing, caught in an in-process app: the percentile (``percentile_cont``) statements and
all of them.

Run from the repository root::

    .venv/bin/python -m bench.dashboard [--studies 1000000] [--reuse] [--keep] [--paths /api/v1/turnaround /dashboard]

The database (``--database-url``, default ``postgresql://postgres@127.0.0.1:5432/telerad_bench``) is created
anew and dropped at the end unless ``--keep``; ``--reuse`` keeps it and skips generation when it already holds
data of the same size, measuring the periods ending when that data was generated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
import yaml
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench.ingest import REPO, free_port, stop, tail
from bench.queue import PROFILES, SENT, insert_rows, weighted
from reading_queue.access import visible_tasks
from reading_queue.tasks import ReadingTask
from reports.delivery import ACTOR as DELIVERY_ACTOR
from reports.delivery import DICOM_PDF, Address
from telerad.broker import connect
from telerad.config import Config, load_config
from telerad.db import make_engine, make_session_factory, upgrade
from telerad.provisioning import prepare
from telerad.sites import Site, SiteAE
from telerad.users import User, create_token, hash_password
from telerad.web import create_app

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telerad_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"
SEED = 20261124
UID_ROOT = f"1.2.826.0.1.3680043.10.543.{SEED}"
COUNTIES = 3
CONSULTANT_SHARE = 20  # one reader in twenty is a provincial consultant
TARGET_MS = 300.0
WARM_UP = 3
CLIENTS = 4
EXPLAINS = 3  # EXPLAIN ANALYZE runs per statement; the median is kept
YEAR_REQUESTS = 5  # at most, for the whole year (not the target): each takes seconds
START_TIMEOUT = 60.0
MODES = ("computed", "cached")  # the web app without the figures cache, and with it
WEB_LOG = str(Path(tempfile.gettempdir()) / "telerad-bench-dashboard-{mode}.log")  # kept after the run
PROVINCE_SUPERVISOR, COUNTY_SUPERVISOR = "supervisor-prov", "supervisor-1"

PRIORITY_MIX = (("STAT", 5), ("URGENT", 20), ("ROUTINE", 75))
#: Median minutes from completion to signature, per priority.
MEDIAN_MINUTES = {"STAT": 12.0, "URGENT": 40.0, "ROUTINE": 360.0}
BREACH_SHARE = 0.05
DELIVERY_MEDIAN_MINUTES, DELIVERY_SIGMA = 2.0, 1.0
#: Arrivals per local hour 0..23: the morning and afternoon peaks, a night trickle.
HOURLY = (1, 1, 1, 1, 1, 1, 2, 4, 8, 12, 12, 11, 6, 6, 10, 11, 10, 8, 5, 4, 3, 3, 2, 1)
#: Arrivals per weekday (Monday first), before the growth over the year.
WEEKLY = (10, 10, 10, 10, 10, 7, 5)
GROWTH = 0.5  # the last day of the year sees this much more than the first
#: Per modality: description, series, instances, bytes per instance, minutes the sending took.
MODALITY_KINDS = (
    ("CT", "胸部CT平扫", 3, 300, 525_000, 4),
    ("DX", "胸部正位", 1, 1, 8_000_000, 1),
    ("CR", "四肢X线", 2, 2, 6_000_000, 1),
    ("ECG", "常规十二导联心电图", 1, 1, 120_000, 1),
)

LOAD_SETTINGS = (
    "SET LOCAL session_replication_role = replica",
    "SET LOCAL synchronous_commit = off",
    "SET LOCAL work_mem = '512MB'",
    "SET LOCAL maintenance_work_mem = '1GB'",
)

LOOKUPS = """
CREATE TEMP TABLE bench_stations (site_id integer PRIMARY KEY, code text, level text, ae_title text, target text,
                                  centre_id integer, push boolean, supervisor text) ON COMMIT DROP;
CREATE TEMP TABLE bench_priorities (priority text PRIMARY KEY, limit_minutes float8, mu float8, sigma float8)
    ON COMMIT DROP;
CREATE TEMP TABLE bench_pool (centre_id integer, modality text, readers integer[], PRIMARY KEY (centre_id, modality))
    ON COMMIT DROP;
CREATE TEMP TABLE bench_kinds (modality text PRIMARY KEY, description text, series integer, instances integer,
                               instance_bytes bigint, sending_minutes float8) ON COMMIT DROP
"""

#: Every task's draws and milestones, in completion order; milestones after :now are not reached (NULL).
PLAN = """
CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
WITH draws AS MATERIALIZED (
    SELECT a.stations[1 + floor(random() * cardinality(a.stations))::int] AS site_id,
           a.priorities[1 + floor(random() * cardinality(a.priorities))::int] AS priority,
           a.days[1 + floor(random() * cardinality(a.days))::int] AS day,
           a.hours[1 + floor(random() * cardinality(a.hours))::int] AS hour,
           random() AS u_second, random() AS u_modality, random() AS u_assign, random() AS u_open,
           random() AS u_reader, random() AS u_lease,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z_read,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z_delivery
    FROM generate_series(1, :studies),
         (SELECT CAST(:stations AS integer[]) AS stations, CAST(:priorities AS text[]) AS priorities,
                 CAST(:days AS integer[]) AS days, CAST(:hours AS integer[]) AS hours) AS a
), local AS (
    SELECT d.*, s.code, s.ae_title, s.target, s.centre_id, s.push, s.supervisor, p.limit_minutes * interval '1 minute' AS allowed,
           CASE WHEN s.level = 'village' THEN m.village[1 + floor(d.u_modality * cardinality(m.village))::int]
                ELSE m.township[1 + floor(d.u_modality * cardinality(m.township))::int] END AS modality,
           (CAST(:first_day AS date) + d.day + make_interval(hours => d.hour, secs => d.u_second * 3600))
               AT TIME ZONE :timezone AS drawn_at,
           exp(p.mu + p.sigma * d.z_read) * interval '1 minute' AS reading
    FROM draws AS d
    JOIN bench_stations AS s USING (site_id)
    JOIN bench_priorities AS p USING (priority),
    (SELECT CAST(:village_modalities AS text[]) AS village, CAST(:township_modalities AS text[]) AS township) AS m
), timed AS (  -- the first and the last local day are partial: wrap into [now - 365 days, now)
    SELECT l.*,
           CASE WHEN l.drawn_at >= :now THEN l.drawn_at - interval '365 days'
                WHEN l.drawn_at < :now - interval '365 days' THEN l.drawn_at + interval '365 days'
                ELSE l.drawn_at END AS opened_at
    FROM local AS l
), read AS (
    SELECT t.*, t.opened_at + t.allowed AS due_at, t.opened_at + t.reading AS v_signed,
           CASE WHEN t.push THEN t.opened_at + (5 + 55 * t.u_assign) * interval '1 second'
                ELSE t.opened_at + (0.05 + 0.45 * t.u_assign) * t.reading END AS v_assigned,
           pool.readers[1 + floor(t.u_reader * cardinality(pool.readers))::int] AS reader
    FROM timed AS t JOIN bench_pool AS pool ON pool.centre_id = t.centre_id AND pool.modality = t.modality
), opened AS (
    SELECT r.*, r.v_assigned + (r.v_signed - r.v_assigned) * (0.1 + 0.6 * r.u_open) AS v_opened,
           r.v_signed + exp(ln(:delivery_median) + :delivery_sigma * r.z_delivery) * interval '1 minute' AS v_delivered,
           least(r.v_signed, :now) - r.opened_at AS elapsed
    FROM read AS r
), reached AS (
    SELECT o.*, u.name AS reader_name,
           CASE WHEN o.v_assigned <= :now THEN o.v_assigned END AS assigned_at,
           CASE WHEN (CASE WHEN o.push THEN o.v_opened ELSE o.v_assigned END) <= :now
                THEN CASE WHEN o.push THEN o.v_opened ELSE o.v_assigned END END AS claimed_at,
           CASE WHEN o.v_opened <= :now THEN o.v_opened END AS first_opened_at,
           CASE WHEN o.v_signed <= :now THEN o.v_signed END AS signed_at,
           CASE WHEN o.v_delivered <= :now THEN o.v_delivered END AS delivered_at,
           CASE WHEN o.elapsed > :escalation * o.allowed THEN o.opened_at + :escalation * o.allowed END AS escalated_at,
           CASE WHEN o.elapsed > o.allowed THEN o.due_at END AS breached_at
    FROM opened AS o JOIN users AS u ON u.id = o.reader
)
SELECT row_number() OVER (ORDER BY r.opened_at) AS id, :uid_root || '.' || row_number() OVER (ORDER BY r.opened_at) AS study_uid,
       r.site_id, r.code, r.ae_title, r.target, r.centre_id, r.push, r.supervisor, r.modality, r.priority, r.opened_at, r.due_at,
       r.reader, r.reader_name, r.assigned_at, r.claimed_at, r.first_opened_at, r.signed_at, r.delivered_at,
       r.escalated_at, r.breached_at, r.u_lease,
       CASE WHEN r.signed_at IS NOT NULL THEN 'signed' WHEN r.claimed_at IS NOT NULL THEN 'claimed' ELSE 'open' END AS state,
       (SELECT count(*) FROM unnest(CAST(:reminders AS float8[])) AS f WHERE r.elapsed > f * r.allowed)::int AS reminders_sent,
       CASE WHEN r.signed_at IS NULL THEN
           (SELECT min(r.opened_at + f * r.allowed) FROM unnest(CAST(:marks AS float8[])) AS f
            WHERE r.opened_at + f * r.allowed > :now) END AS next_check_at,
       CASE WHEN r.breached_at IS NULL THEN NULL
            WHEN r.claimed_at <= r.due_at THEN 'claimed by ' || r.reader_name || ' but not signed in time'
            WHEN r.push THEN 'assigned to ' || r.reader_name || ' but not claimed in time'
            ELSE 'not claimed by any reader in time' END AS breach_reason
FROM reached AS r
ORDER BY r.opened_at
"""

PATIENTS = """
INSERT INTO patients (id, issuer, patient_id, name, sex, birth_date, person_key, site_id, created_at, updated_at)
SELECT p.id, 'site:' || p.code, 'P' || lpad(p.id::text, 9, '0'), 'BENCH^' || p.id,
       CASE WHEN random() < 0.5 THEN 'M' ELSE 'F' END,
       to_char(DATE '1930-01-01' + floor(random() * 33000)::int, 'YYYYMMDD'), NULL, p.site_id,
       p.opened_at - k.sending_minutes * interval '1 minute' - :stable * interval '1 second',
       p.opened_at - k.sending_minutes * interval '1 minute' - :stable * interval '1 second'
FROM bench_plan AS p JOIN bench_kinds AS k USING (modality)
"""

STUDIES = """
INSERT INTO studies (id, study_uid, patient_pk, site_id, calling_ae, accession_number, study_id, study_date, study_time,
                     description, referring_physician, modalities, priority, num_series, num_instances, size_bytes,
                     state, update_pending, first_received_at, last_received_at, completed_at)
SELECT p.id, p.study_uid, p.id, p.site_id, p.ae_title, 'A' || lpad(p.id::text, 9, '0'), p.id::text,
       to_char(p.opened_at AT TIME ZONE :timezone, 'YYYYMMDD'), to_char(p.opened_at AT TIME ZONE :timezone, 'HH24MISS'),
       k.description, '', p.modality, '', k.series, k.instances, k.instances * k.instance_bytes, 'complete', false,
       p.opened_at - k.sending_minutes * interval '1 minute' - :stable * interval '1 second',
       p.opened_at - :stable * interval '1 second', p.opened_at
FROM bench_plan AS p JOIN bench_kinds AS k USING (modality)
"""

TASKS = """
INSERT INTO reading_tasks (id, dedupe_key, kind, parent_id, study_pk, study_uid, service, modality, source_site_id,
                           centre_site_id, priority, priority_source, opened_at, due_at, state, assignee_id, holder_id,
                           lease_until, reminders_sent, next_check_at, escalated_at, breached_at, breach_reason,
                           signed_at, signed_by_id, assigned_at, first_opened_at, delivered_at, reader_id)
SELECT id, 'read:' || study_uid, 'read', NULL, id, study_uid, CASE WHEN modality = 'ECG' THEN 'ecg' ELSE 'imaging' END,
       modality, site_id, centre_id, priority, CASE WHEN priority = 'ROUTINE' THEN 'default' ELSE 'station' END,
       opened_at, due_at, state,
       CASE WHEN push AND assigned_at IS NOT NULL THEN reader END,
       CASE WHEN state = 'claimed' THEN reader END,
       CASE WHEN state = 'claimed' THEN :now + (25 * u_lease - 5) * interval '1 minute' END,
       reminders_sent, next_check_at, escalated_at, breached_at, breach_reason,
       signed_at, CASE WHEN state = 'signed' THEN reader END, assigned_at, first_opened_at, delivered_at,
       CASE WHEN state <> 'open' OR (push AND assigned_at IS NOT NULL) THEN reader END
FROM bench_plan
"""

EVENTS = """
INSERT INTO task_events (task_id, at, actor, kind, detail)
SELECT p.id, e.at, e.actor, e.kind, e.detail
FROM bench_plan AS p
CROSS JOIN LATERAL (VALUES
    (p.opened_at, 'system', 'created',
     json_build_object('priority', p.priority,
                       'priority_source', CASE WHEN p.priority = 'ROUTINE' THEN 'default' ELSE 'station' END,
                       'due_at', to_char(p.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))),
    (CASE WHEN p.push THEN p.assigned_at END, 'system', 'assigned',
     json_build_object('user', p.reader_name, 'mode', 'push')),
    (p.claimed_at, p.reader_name, 'claimed',
     json_build_object('lease_until', to_char((p.claimed_at + :lease * interval '1 minute') AT TIME ZONE 'UTC',
                                              'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))),
    (p.first_opened_at, p.reader_name, 'opened', json_build_object()),
    (p.escalated_at, 'system', 'escalated',
     json_build_object('offered', json_build_array(), 'supervisors', json_build_array(p.supervisor))),
    (p.breached_at, 'system', 'breached', json_build_object('reason', p.breach_reason)),
    (p.signed_at, p.reader_name, 'signed', json_build_object('within_deadline', p.signed_at <= p.due_at)),
    (p.delivered_at, CAST(:delivery_actor AS text), 'report_delivered',
     json_build_object('delivery_id', NULL, 'channel', CAST(:channel AS text), 'target', p.target, 'signature_id', NULL,
                       'attempts', 1, 'error', NULL))
) AS e (at, actor, kind, detail)
WHERE e.at IS NOT NULL
"""

LOADED_TABLES = ("patients", "studies", "reading_tasks", "task_events")


# --- the alliance ---------------------------------------------------------------------------------


def alliance(stations: int) -> dict[str, Any]:
    """The configuration's sites and reading centres: the province, the counties and ``stations`` stations."""
    sites: list[dict[str, Any]] = [{"code": "PROV", "name": "省人民医院", "name_en": "Provincial People's Hospital",
                                    "level": "province"}]
    sites += [{"code": f"CNTY-{c}", "name": f"县{c}远程影像心电诊断中心", "name_en": f"County {c} reading centre",
               "level": "county", "parent": "PROV"} for c in range(1, COUNTIES + 1)]
    townships = max(COUNTIES, stations // 3)
    for t in range(1, townships + 1):
        sites.append({"code": f"TS-{t:02d}", "name": f"镇{t}卫生院", "name_en": f"Township {t} health centre",
                      "level": "township", "parent": f"CNTY-{(t - 1) % COUNTIES + 1}", "ae_titles": [f"TS{t:02d}"],
                      "returns_to": {"ae_title": f"TS{t:02d}_RPT", "host": f"10.0.{t}.1", "port": 104}})
    for n in range(stations - townships):
        t, v = n % townships + 1, n // townships + 1
        sites.append({"code": f"VIL-{t:02d}-{v:02d}", "name": f"村{t}-{v}卫生室", "name_en": f"Village {t}-{v} clinic",
                      "level": "village", "parent": f"TS-{t:02d}", "ae_titles": [f"V{t:02d}{v:02d}"],
                      "returns_to": {"ae_title": f"V{t:02d}{v:02d}_RPT", "host": f"10.0.{t}.{v + 1}", "port": 104}})
    centres = [{"site": f"CNTY-{c}", "mode": "push" if c % 2 else "pull"} for c in range(1, COUNTIES + 1)]
    return {"sites": sites, "reading": {"centres": [*centres, {"site": "PROV", "mode": "pull"}]}}


def environment(database_url: str, data_dir: Path, mode: str) -> dict[str, str]:
    """The ``TELERAD_*`` variables of the installation measured in ``mode``: with Redis (the figures cache and the
    sign-in limiter) when ``cached``, without (figures computed on each request) when ``computed``."""
    return {
        "TELERAD_DATABASE_URL": database_url,
        "TELERAD_REDIS_URL": REDIS_URL if mode == "cached" else "",
        "TELERAD_SERVICE_DATA_DIR": str(data_dir),
        "TELERAD_WEB_PORT": str(free_port()),
    }


def load_people(engine: Engine, readers: int, rng: random.Random) -> None:
    """Readers at the counties (every profile at every county), consultants at the province, the supervisors.

    Inserted directly, all with one password hash: 200 Argon2 hashes would only time Argon2.
    """
    consultants = max(1, readers // CONSULTANT_SHARE)
    people: list[dict[str, Any]] = []
    for n in range(readers - consultants):
        profile = PROFILES[n // COUNTIES] if n < len(PROFILES) * COUNTIES else weighted(rng, [(p, p[2]) for p in PROFILES])
        modalities, expert, _ = profile
        kind = "心电" if modalities == ("ECG",) else "影像"
        people.append({"name": f"reader-{n + 1:03d}", "display_name": f"{kind}医师{n + 1}", "role": "reader",
                       "site": f"CNTY-{n % COUNTIES + 1}", "modalities": ",".join(modalities), "expert": expert})
    people += [{"name": f"consultant-{n + 1:02d}", "display_name": f"省级专家{n + 1}", "role": "consultant",
                "site": "PROV", "modalities": "CT,CR,DX,ECG", "expert": True} for n in range(consultants)]
    people += [{"name": f"supervisor-{c}", "display_name": f"县{c}质控主任", "role": "supervisor", "site": f"CNTY-{c}",
                "modalities": "", "expert": False} for c in range(1, COUNTIES + 1)]
    people.append({"name": PROVINCE_SUPERVISOR, "display_name": "省质控中心主任", "role": "supervisor", "site": "PROV",
                   "modalities": "", "expert": False})
    password_hash = hash_password(uuid.uuid4().hex)
    with engine.begin() as connection:
        site_ids = dict(connection.execute(select(Site.code, Site.id)).all())
        insert_rows(connection, User.__table__, [
            {"name": p["name"], "display_name": p["display_name"], "role": p["role"], "site_id": site_ids[p["site"]],
             "modalities": p["modalities"], "expert": p["expert"], "password_hash": password_hash, "active": True,
             "created_at": datetime.now(UTC) - timedelta(days=400)}
            for p in people
        ])


# --- generation -----------------------------------------------------------------------------------


def lognormal(median: float, limit: float, beyond: float) -> tuple[float, float]:
    """``mu`` and ``sigma`` of a log-normal with ``median`` and a share ``beyond`` above ``limit``."""
    sigma = math.log(limit / median) / statistics.NormalDist().inv_cdf(1 - beyond)
    return math.log(median), sigma


def arrival_days(now: datetime, timezone: str) -> tuple[date, list[int]]:
    """The first local date of the year and day offsets, each repeated by its weight (weekday, growth)."""
    first = (now - timedelta(days=365)).astimezone(ZoneInfo(timezone)).date()
    days = []
    for offset in range(366):
        weight = WEEKLY[(first + timedelta(days=offset)).weekday()] * (1 + GROWTH * offset / 365)
        days += [offset] * round(weight)
    return first, days


def fill_lookups(connection: Connection, config: Config, rng: random.Random) -> None:
    """The small tables the generation draws from: stations, priorities, reader pools, modality kinds."""
    connection.exec_driver_sql(LOOKUPS)
    sites = {site.id: site for site in connection.execute(select(*Site.__table__.c))}
    ae_titles = dict(connection.execute(select(SiteAE.site_id, SiteAE.ae_title)).all())
    supervisors = dict(connection.execute(select(User.site_id, User.name).where(User.role == "supervisor")).all())
    modes = {centre.site: centre.mode for centre in config.reading.centres}
    stations = []
    for site in sites.values():
        if site.level not in ("township", "village"):
            continue
        centre = site.parent_id
        while sites[centre].level != "county":
            centre = sites[centre].parent_id
        stations.append({
            "site_id": site.id, "code": site.code, "level": site.level, "ae_title": ae_titles[site.id],
            "target": str(Address(site.return_ae_title, site.return_host, site.return_port)), "centre_id": centre,
            "push": modes.get(sites[centre].code) == "push", "supervisor": supervisors[centre],
        })
    connection.execute(text("INSERT INTO bench_stations VALUES (:site_id, :code, :level, :ae_title, :target, "
                            ":centre_id, :push, :supervisor)"), stations)
    policy = config.reading
    limits = policy.turnaround_minutes
    connection.execute(text("INSERT INTO bench_priorities VALUES (:priority, :limit, :mu, :sigma)"), [
        {"priority": p, "limit": limits[p], "mu": mu, "sigma": sigma}
        for p, _ in PRIORITY_MIX for mu, sigma in [lognormal(MEDIAN_MINUTES[p], limits[p], BREACH_SHARE)]
    ])
    pools: dict[tuple[int, str], list[int]] = {}
    for user_id, site_id, modalities, expert in connection.execute(
        select(User.id, User.site_id, User.modalities_csv, User.expert).where(User.role == "reader").order_by(User.id)
    ):
        share = 1 if expert else rng.randint(2, 5)  # some read more than others; experts keep to hard cases
        for modality in modalities.split(","):
            pools.setdefault((site_id, modality), []).extend([user_id] * share)
    connection.execute(text("INSERT INTO bench_pool VALUES (:centre, :modality, :readers)"),
                       [{"centre": c, "modality": m, "readers": r} for (c, m), r in pools.items()])
    connection.execute(text("INSERT INTO bench_kinds VALUES (:m, :d, :s, :i, :b, :t)"),
                       [dict(zip("mdsibt", kind, strict=True)) for kind in MODALITY_KINDS])


def generate(engine: Engine, config: Config, studies: int, now: datetime, rng: random.Random) -> None:
    """Load the year's patients, studies, reading tasks and their timelines; VACUUM ANALYZE; print each step."""
    policy = config.reading
    first_day, days = arrival_days(now, policy.timezone)
    parameters = {
        "studies": studies, "now": now, "first_day": first_day, "days": days, "timezone": policy.timezone,
        "hours": [hour for hour, weight in enumerate(HOURLY) for _ in range(weight)],
        "priorities": [priority for priority, weight in PRIORITY_MIX for _ in range(weight)],
        "village_modalities": [m for m, weight in SENT["village"] for _ in range(weight)],
        "township_modalities": [m for m, weight in SENT["township"] for _ in range(weight)],
        "delivery_median": DELIVERY_MEDIAN_MINUTES, "delivery_sigma": DELIVERY_SIGMA,
        "escalation": policy.escalation_fraction, "reminders": list(policy.reminder_fractions),
        "marks": [*policy.reminder_fractions, policy.escalation_fraction, 1.0], "uid_root": UID_ROOT,
    }
    with engine.begin() as connection:
        for setting in LOAD_SETTINGS:
            connection.exec_driver_sql(setting)
        connection.execute(text("SELECT setseed(:seed)"), {"seed": SEED % 1000 / 1000})
        fill_lookups(connection, config, rng)
        parameters["stations"] = [
            site_id for site_id, level in connection.exec_driver_sql("SELECT site_id, level FROM bench_stations")
            for _ in range(3 if level == "township" else 1)
        ]
        steps = (
            ("plan (draws and milestones)", PLAN, parameters),
            ("patients", PATIENTS, {"stable": config.dicom.stable_seconds}),
            ("studies", STUDIES, {"timezone": policy.timezone, "stable": config.dicom.stable_seconds}),
            ("reading_tasks", TASKS, {"now": now}),
            ("task_events", EVENTS, {
                "lease": policy.lease_minutes, "delivery_actor": DELIVERY_ACTOR, "channel": DICOM_PDF,
            }),
        )
        for name, statement, values in steps:
            started = time.perf_counter()
            connection.execute(text(statement), values)
            print(f"  {name}: {time.perf_counter() - started:.1f} s", flush=True)
        for table in LOADED_TABLES[:3]:
            connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(LOADED_TABLES)}, users, sites")
    print(f"  VACUUM ANALYZE: {time.perf_counter() - started:.1f} s", flush=True)


def build(admin: Engine, config: Config, args: argparse.Namespace, now: datetime) -> None:
    """Create the database anew and fill it with the year ending ``now``; print how long each part took."""
    name = make_url(config.database_url).database
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    rng = random.Random(SEED)
    engine = make_engine(config.database_url)
    try:
        started = time.perf_counter()
        prepare(config, make_session_factory(engine))
        load_people(engine, args.readers, rng)
        print(f"  schema, {args.sites} stations and the people: {time.perf_counter() - started:.1f} s", flush=True)
        generate(engine, config, args.studies, now, rng)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        engine.dispose()
    shape = json.dumps({**data_shape(args), "now": now.isoformat()})
    with admin.connect() as connection:
        connection.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{shape}'")


def data_shape(args: argparse.Namespace) -> dict[str, int]:
    """What ``--reuse`` compares with the data a database holds."""
    return {"studies": args.studies, "sites": args.sites, "readers": args.readers}


def stored_shape(admin: Engine, name: str) -> dict[str, Any] | None:
    """The shape and end of the data the database ``name`` holds (written once generation succeeded), if any."""
    with admin.connect() as connection:
        comment = connection.execute(
            text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :name"), {"name": name}
        ).scalar()
    return json.loads(comment) if comment else None


def print_counts(engine: Engine, now: datetime) -> None:
    """Rows per table, the tasks by state, the overdue tail and the share breached."""
    with engine.connect() as connection:
        counts = {table: connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                  for table in ("sites", "users", *LOADED_TABLES)}
        states = dict(connection.execute(select(ReadingTask.state, func.count()).group_by(ReadingTask.state)).all())
        overdue = connection.scalar(select(func.count()).where(ReadingTask.state != "signed", ReadingTask.due_at < now))
        breached = connection.scalar(select(func.count()).where(ReadingTask.breached_at.is_not(None)))
    print("rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
    print("tasks: " + ", ".join(f"{state} {count:,}" for state, count in sorted(states.items()))
          + f"; {overdue} open or claimed past their deadline; {breached / max(1, counts['reading_tasks']):.1%} breached")


# --- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One measured request: who asks, over which whole local days and filters, and whether the target applies."""

    label: str
    caller: str
    first: date
    last: date
    zone: ZoneInfo
    site: str | None = None
    modality: str | None = None
    target: bool = True

    @property
    def since(self) -> datetime:
        """The period's start: local midnight before ``first``."""
        return datetime.combine(self.first, dtime(), self.zone)

    @property
    def until(self) -> datetime:
        """The period's end: local midnight after ``last``."""
        return datetime.combine(self.last + timedelta(days=1), dtime(), self.zone)

    @property
    def query(self) -> dict[str, str]:
        """The query: the API's ``since`` and ``until``, the page's ``from`` and ``to`` (each ignores the other's)."""
        query = {"since": self.since.isoformat(), "until": self.until.isoformat(),
                 "from": self.first.isoformat(), "to": self.last.isoformat()}
        return query | {key: value for key, value in (("site", self.site), ("modality", self.modality)) if value}


@dataclass
class Result:
    """The figures of one case on one path: seconds per request by mode, one client and four."""

    path: str
    case: Case
    signed: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    loaded: dict[str, list[float]] = field(default_factory=dict)
    percentile_ms: float = 0.0
    sql_ms: float = 0.0
    statements: int = 0
    error: str = ""


class Refused(Exception):
    """The app answered a measured request with something other than 200."""


def refusal(status: int, content_type: str, body: str) -> str:
    """A refused request in one line: the status, and the problem's detail or the start of the body."""
    detail = body
    if "json" in content_type:
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(body).get("detail", body)
    where = f" (traceback in {WEB_LOG.format(mode='*')})" if status >= 500 else ""
    return f"HTTP {status}{where}: {' '.join(str(detail).split())[:120]}"


def cases(end: datetime, timezone: str) -> list[Case]:
    """The cases measured on each path: periods of whole local days up to the day of ``end``."""
    zone = ZoneInfo(timezone)
    last = end.astimezone(zone).date()
    month, week, year = last - timedelta(days=29), last - timedelta(days=6), last - timedelta(days=365)
    province, county = PROVINCE_SUPERVISOR, COUNTY_SUPERVISOR
    return [
        Case("province, 30 days", province, month, last, zone),
        Case("province, 30 days, site TS-01", province, month, last, zone, site="TS-01"),
        Case("province, 30 days, CT", province, month, last, zone, modality="CT"),
        Case("province, 7 days", province, week, last, zone),
        Case("county CNTY-1, 30 days", county, month, last, zone),
        Case("county CNTY-1, 30 days, ECG", county, month, last, zone, modality="ECG"),
        Case("province, whole year", province, year, last, zone, target=False),
        Case("county CNTY-1, whole year", county, year, last, zone, target=False),
    ]


def signed_in_period(sessions: sessionmaker, case: Case) -> int:
    """How many reading tasks the caller sees that were signed in the case's period and match its filters."""
    with sessions() as session:
        user = session.scalar(select(User).where(User.name == case.caller))
        conditions = [ReadingTask.kind == "read", visible_tasks(session, user),
                      ReadingTask.signed_at >= case.since, ReadingTask.signed_at < case.until]
        if case.site:
            conditions.append(ReadingTask.source_site_id == select(Site.id).where(Site.code == case.site).scalar_subquery())
        if case.modality:
            conditions.append(ReadingTask.modality == case.modality)
        return session.scalar(select(func.count()).where(*conditions))


@contextlib.contextmanager
def web_app(config_path: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """``telerad web`` in its own process group until the block ends; yields its base URL once ``/healthz`` answers."""
    command = [str(Path(sys.prefix) / "bin" / "telerad"), "--config", str(config_path), "web"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{env['TELERAD_WEB_PORT']}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"telerad web did not start; {log}:\n{tail(log)}")
            time.sleep(0.2)
        yield base
    finally:
        stop(process)


def healthy(base: str) -> bool:
    """Whether the web app at ``base`` answers ``/healthz``."""
    try:
        return requests.get(f"{base}/healthz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def timed_gets(base: str, path: str, case: Case, token: str, count: int, warm_up: int = 0) -> list[float]:
    """Seconds of ``count`` GETs on one kept-alive connection, after ``warm_up`` unmeasured ones."""
    times = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        for n in range(warm_up + count):
            started = time.perf_counter()
            response = http.get(base + path, params=case.query, timeout=600)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise Refused(refusal(response.status_code, response.headers.get("Content-Type", ""), response.text))
            if n >= warm_up:
                times.append(elapsed)
    return times


def concurrent_gets(base: str, path: str, case: Case, token: str, count: int) -> list[float]:
    """Seconds of about ``count`` GETs shared by ``CLIENTS`` clients asking at once."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        runs = list(pool.map(lambda _: timed_gets(base, path, case, token, -(-count // CLIENTS)), range(CLIENTS)))
    return [seconds for run in runs for seconds in run]


class Statements:
    """The SQL statements, with their parameters, that the engines of this process run while recording."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.recording = False
        event.listen(Engine, "before_cursor_execute", self._note)

    def _note(self, _connection: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if self.recording:
            self.seen.append((statement, parameters))

    @contextlib.contextmanager
    def record(self) -> Iterator[list[tuple[str, Any]]]:
        """Record the statements run in the block into the list yielded."""
        self.seen, self.recording = [], True
        try:
            yield self.seen
        finally:
            self.recording = False

    def close(self) -> None:
        """Stop listening."""
        event.remove(Engine, "before_cursor_execute", self._note)


def sql_times(client: FlaskClient, statements: Statements, engine: Engine, path: str, case: Case, token: str
              ) -> tuple[float, float, int]:
    """PostgreSQL's execution time (ms, ``EXPLAIN ANALYZE``, median of runs; one run for the whole year) of the
    statements the request issues in an in-process app: the percentile ones, all of them; and how many there were."""
    headers = {"Authorization": f"Bearer {token}"}
    with statements.record() as seen:
        response = client.get(path, query_string=case.query, headers=headers)
    if response.status_code != 200:
        raise Refused(refusal(response.status_code, response.content_type or "", response.get_data(as_text=True)))
    percentile = every = 0.0
    with engine.connect() as connection:
        for statement, parameters in seen:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            runs = []
            for _ in range(EXPLAINS if case.target else 1):
                plan = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + statement, parameters
                ).scalar()
                runs.append((json.loads(plan) if isinstance(plan, str) else plan)[0]["Execution Time"])
            every += statistics.median(runs)
            percentile += statistics.median(runs) if "percentile_cont" in statement else 0.0
    return percentile, every, len(seen)


def measure(bases: dict[str, str], config: Config, engine: Engine, paths: Sequence[str], end: datetime,
            requests_per_case: int) -> list[Result]:
    """Every case on every path that exists, in each mode: one client, then four at once (target cases); and the
    SQL's own time, caught in an in-process app without the cache."""
    sessions = make_session_factory(engine)
    with sessions() as session, session.begin():
        tokens = {name: create_token(session, name, actor="bench") for name in (PROVINCE_SUPERVISOR, COUNTY_SUPERVISOR)}
    connect(REDIS_URL).flushdb()  # the bench's own Redis database: no figures cached from another run's data
    app = create_app(config)
    client = app.test_client()
    client.get("/healthz")  # connects: the statements recorded are then the request's own
    statements = Statements()
    results = []
    try:
        for path in paths:
            probe = requests.get(bases["computed"] + path, timeout=600,
                                 headers={"Authorization": f"Bearer {tokens[PROVINCE_SUPERVISOR]}"})
            if probe.status_code == 404:
                print(f"{path}: 404 Not Found, skipped (not there yet?)", flush=True)
                continue
            for case in cases(end, config.reading.timezone):
                result = Result(path, case, signed_in_period(sessions, case))
                token = tokens[case.caller]
                count = requests_per_case if case.target else min(requests_per_case, YEAR_REQUESTS)
                try:
                    for mode, base in bases.items():
                        result.seconds[mode] = timed_gets(base, path, case, token, count, WARM_UP if case.target else 1)
                        if case.target:
                            result.loaded[mode] = concurrent_gets(base, path, case, token, count)
                    result.percentile_ms, result.sql_ms, result.statements = sql_times(
                        client, statements, engine, path, case, token
                    )
                except Refused as refused:
                    result.error = str(refused)
                print(f"  {path} {case.label}: " + (result.error or ", ".join(
                    f"{mode} p50 {p50(seconds):.0f} ms" for mode, seconds in result.seconds.items()
                )), flush=True)
                results.append(result)
    finally:
        statements.close()
        app.extensions["telerad.sessions"].kw["bind"].dispose()
    return results


# --- report ---------------------------------------------------------------------------------------


def p50(seconds: Sequence[float]) -> float:
    """The median in milliseconds."""
    return statistics.median(seconds) * 1000


def p95(seconds: Sequence[float]) -> float:
    """The 95th percentile in milliseconds (linear interpolation, as PostgreSQL's ``percentile_cont``)."""
    return statistics.quantiles(seconds, n=20, method="inclusive")[-1] * 1000


def verdict(case: Case, by_mode: dict[str, list[float]]) -> str:
    """Whether the 95th percentile meets the target in each mode (the whole year is not held to it)."""
    if not case.target:
        return "(not target)"
    return " / ".join("ok" if p95(seconds) < TARGET_MS else "MISSED" for seconds in by_mode.values())


def figures_cells(by_mode: dict[str, list[float]]) -> str:
    """Median and 95th percentile of each mode, in milliseconds."""
    return "".join(f"{p50(by_mode[mode]):9.1f}{p95(by_mode[mode]):9.1f}" for mode in MODES)


def report(results: Sequence[Result], requests_per_case: int) -> None:
    """Print one table per path: one client with the SQL's own time beside it, then four clients."""
    modes = f"{'computed':>18}{'cached':>18}"
    header = f"{'case':34}{'p50 ms':>9}{'p95 ms':>9}{'p50 ms':>9}{'p95 ms':>9}  {'target':16}"
    for path in dict.fromkeys(result.path for result in results):
        rows = [result for result in results if result.path == path]
        print(f"\nGET {path}: {requests_per_case} requests per case (the whole year: "
              f"{min(requests_per_case, YEAR_REQUESTS)}), one client; target p95 < {TARGET_MS:.0f} ms")
        print(f"{'':34}{modes}")
        print(f"{header}{'signed':>9}{'PG percentile ms':>18}{'PG all ms':>11}{'stmts':>7}")
        for result in rows:
            if result.error:
                print(f"{result.case.label:34}  {result.error[:150]}")
                continue
            print(f"{result.case.label:34}{figures_cells(result.seconds)}  {verdict(result.case, result.seconds):16}"
                  f"{result.signed:9,}{result.percentile_ms:18.1f}{result.sql_ms:11.1f}{result.statements:7}")
        print(f"\nGET {path}: {CLIENTS} clients at once, {requests_per_case} requests per case between them")
        print(f"{'':34}{modes}")
        print(header)
        for result in rows:
            if result.loaded:
                print(f"{result.case.label:34}{figures_cells(result.loaded)}  {verdict(result.case, result.loaded)}")
    if results:
        print("\ncomputed: the web app without the figures cache (TELERAD_REDIS_URL empty), what a cache miss costs; "
              "cached: with it (Redis), after a first request filled it; target: computed / cached")
        print("signed: reading tasks signed in the period that the caller sees and the filters match; PG: PostgreSQL's "
              "execution time (EXPLAIN ANALYZE, which adds some overhead of its own) of the SQL statements the same "
              "request issues when computing, the percentile_cont ones and all")


# --- entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1_000_000, help="studies over the year (default: 1000000)")
    parser.add_argument("--sites", type=int, default=50, help="stations: townships and villages (default: 50)")
    parser.add_argument("--readers", type=int, default=200, help="readers and consultants (default: 200)")
    parser.add_argument("--requests", type=int, default=30, help="measured requests per case (default: 30)")
    parser.add_argument("--paths", nargs="+", default=["/api/v1/turnaround", "/dashboard"],
                        help="paths measured (default: /api/v1/turnaround /dashboard); a 404 is skipped")
    parser.add_argument("--database-url", default=DATABASE_URL, help=f"the benchmark's database (default: {DATABASE_URL})")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database, and skip generation when it holds data of the same size")
    args = parser.parse_args(argv)
    if args.studies < 1000 or args.sites < COUNTIES or args.readers < 20 or args.requests < 2:
        parser.error("needs --studies >= 1000, --sites >= 3, --readers >= 20 and --requests >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Generate (or reuse) the year, measure every path, print the tables; drop the database unless kept."""
    args = parse_args(argv)
    url = make_url(args.database_url)
    admin = create_engine(url.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT")
    work = Path(tempfile.mkdtemp(prefix="telerad-bench-dashboard-"))
    try:
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump(alliance(args.sites), allow_unicode=True), encoding="utf-8")
        envs = {mode: environment(args.database_url, work / "var", mode) for mode in MODES}
        config = load_config(config_path, envs["computed"])
        stored = stored_shape(admin, url.database)
        if args.reuse and stored is not None and all(stored.get(k) == v for k, v in data_shape(args).items()):
            end = datetime.fromisoformat(stored["now"])
            upgrade(config.database_url)
            print(f"reusing {url.database} (schema brought up to date): {args.studies:,} studies over the year ending "
                  f"{end:%Y-%m-%d %H:%M} UTC")
        else:
            end = datetime.now(UTC)
            print(f"generating {args.studies:,} studies, {args.sites} stations, {args.readers} readers over the year "
                  f"ending {end:%Y-%m-%d %H:%M} UTC into {url.database}", flush=True)
            build(admin, config, args, end)
        engine = make_engine(args.database_url)
        try:
            print_counts(engine, end)
            with contextlib.ExitStack() as apps:
                bases = {mode: apps.enter_context(web_app(config_path, envs[mode], Path(WEB_LOG.format(mode=mode))))
                         for mode in MODES}
                results = measure(bases, config, engine, args.paths, end, args.requests)
        finally:
            engine.dispose()
    finally:
        if not (args.keep or args.reuse):
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.requests)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
