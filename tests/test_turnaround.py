"""Turnaround figures on a known history, checked exactly: every interval (to assignment, first opening,
signature, delivery) overall and per site, modality, priority and reader, the share within deadline, the daily
trend and the breaches with their reasons — with open tasks, a consult, an addendum delivered again, a
reassignment, a daylight-saving change and a clock stepped back. Then the supervisor's actions and the live
board."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alliance import CT, ECG, Alliance, assert_problem
from history import MINUTE, History, made
from conftest import RedisServer
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from reading_queue import jobs
from reading_queue.access import visible_tasks
from reading_queue.tasks import TaskEvent
from reading_queue.turnaround import Filters, figures
from telerad import clock
from telerad.config import CentreConfig, Config
from telerad.users import User


@pytest.fixture
def known(pull: Alliance) -> dict[str, History]:
    """Five studies with known milestones (minutes after completion):

    ====  ==========  ========  ==========  =====  ======  =========  =====================================
    task  site        priority  claimed     open   signed  delivered  also
    ====  ==========  ========  ==========  =====  ======  =========  =====================================
    A     TS-DONGGUAN ROUTINE   10 ct       15     60      62
    B     TS-DONGGUAN ROUTINE   20 ct       30     120     125        an addendum delivered again at 2000
    C     TS-DONGGUAN STAT      5 ct        6      45      —          breached at 31 (due at 30)
    D     TS-XIHE     ROUTINE   40 ecg      56     150     151        reassigned at 50 to senior-ecg, who
                                                                      claims at 55 and asks a consult at 60
    E     TS-DONGGUAN ROUTINE   10 ct       12     —       —          an X-ray (DX), still open
    ====  ==========  ========  ==========  =====  ======  =========  =====================================
    """
    a = made(pull, CT, "DG_CT")
    a.claim(10, "reader-ct"), a.open(15, "reader-ct"), a.sign(60, "reader-ct"), a.event(62, "report_delivered")
    b = made(pull, CT, "DG_CT")
    b.claim(20, "reader-ct"), b.open(30, "reader-ct"), b.sign(120, "reader-ct"), b.event(125, "report_delivered")
    b.event(2000, "addendum_signed"), b.event(2000, "report_delivered")
    c = made(pull, CT, "DG_CT", "dongguan", "STAT")
    c.claim(5, "reader-ct"), c.open(6, "reader-ct"), c.claim(20, "reader-ct")  # the viewer renews the lease
    c.at(31)
    jobs.sla_sweep()
    c.sign(45, "reader-ct")
    d = made(pull, ECG, "XH_ECG")
    d.claim(40, "reader-ecg")
    d.at(50)
    moved = pull.post(f"/tasks/{d.task.id}/reassign", "supervisor", {"user": "senior-ecg", "reason": "张医师请假"})
    assert moved.status_code == 200, moved.json
    d.claim(55, "senior-ecg"), d.open(56, "senior-ecg")
    d.at(60)
    consult = pull.post(f"/tasks/{d.task.id}/consult", "senior-ecg", {"question": "ST 段？"}).json
    d.at(80)
    assert pull.post(f"/tasks/{consult['task_id']}/claim", "consultant").status_code == 200
    d.open(81, "consultant")
    d.at(100)
    assert pull.post(f"/tasks/{consult['task_id']}/answer", "consultant", {"answer": "同意", "mode": "co-sign"}).status_code == 200
    d.sign(150, "senior-ecg"), d.event(151, "report_delivered")
    e = made(pull, CT, "DG_CT", Modality="DX")
    e.claim(10, "reader-ct"), e.open(12, "reader-ct")
    pull.advance(minutes=5)
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


def _figures(alliance: Alliance, who: str = "supervisor", **query: str) -> dict[str, Any]:
    response = alliance.get("/turnaround", who, **query)
    assert response.status_code == 200, response.json
    return response.json


def _stats(count: int, median: float | None, p90: float | None, maximum: float | None, **extra: Any) -> dict[str, Any]:
    return {"count": count, "median_minutes": median, "p90_minutes": p90, "max_minutes": maximum, **extra}


def test_every_interval_overall_is_computed_exactly(known: dict[str, History], pull: Alliance) -> None:
    body = _figures(pull)
    assert body["intervals"] == {
        "assigned": _stats(5, 10, 32, 40),  # 5 10 10 20 40: p90 at 3.6 → 20 + 0.6 × 20
        "opened": _stats(5, 15, 45.6, 56),  # 6 12 15 30 56 (the consultant's opening is not the task's first)
        "signed": _stats(4, 90, 141, 150, within_deadline_share=0.75),  # 45 60 120 150; C was late
        "delivered": _stats(3, 125, 145.8, 151),  # 62 125 151: B's second delivery changes nothing
    }
    assert body["signed"] == {"count": 4, "median_minutes": 90, "p90_minutes": 141, "within_deadline_share": 0.75}
    assert body["delivered"] == {"count": 3, "median_minutes": 125, "p90_minutes": 145.8}
    assert body["backlog"] == {"overdue": 0, "under_1h": 0, "under_4h": 0, "under_24h": 1, "later": 0}  # E


def test_figures_per_site_modality_priority_and_reader(known: dict[str, History], pull: Alliance) -> None:
    groups = _figures(pull)["groups"]
    by = {dimension: {row["key"]: row for row in rows} for dimension, rows in groups.items()}
    assert set(by["site"]) == {"TS-DONGGUAN", "TS-XIHE"}
    assert by["site"]["TS-DONGGUAN"]["name"] == "东关镇卫生院"
    assert by["site"]["TS-DONGGUAN"]["signed"] == _stats(3, 60, 108, 120, within_deadline_share=0.6667)
    assert by["site"]["TS-DONGGUAN"]["assigned"] == _stats(4, 10, 17, 20)  # 5 10 10 20
    assert by["site"]["TS-XIHE"]["signed"] == _stats(1, 150, 150, 150, within_deadline_share=1.0)
    assert by["modality"]["ECG"]["opened"] == _stats(1, 56, 56, 56)
    assert by["priority"]["STAT"]["signed"] == _stats(1, 45, 45, 45, within_deadline_share=0.0)
    assert by["priority"]["ROUTINE"]["delivered"] == _stats(3, 125, 145.8, 151)
    # the reader who has the task: D went to senior-ecg, who signed it; reader-ecg keeps nothing
    assert set(by["reader"]) == {"reader-ct", "senior-ecg"}
    assert by["reader"]["senior-ecg"]["assigned"] == _stats(1, 40, 40, 40)
    assert by["reader"]["reader-ct"]["signed"] == by["site"]["TS-DONGGUAN"]["signed"]
    assert by["reader"]["reader-ct"]["name"] == "影像医师 李强"


def test_filters_periods_and_the_daily_trend(known: dict[str, History], pull: Alliance) -> None:
    signed_d = known["D"].task.opened_at + 150 * MINUTE
    only_ecg = _figures(pull, modality="ECG")
    assert only_ecg["intervals"]["signed"]["count"] == 1 and only_ecg["groups"]["site"][0]["key"] == "TS-XIHE"
    assert _figures(pull, reader="reader-ct")["intervals"]["assigned"]["count"] == 4
    later = _figures(pull, since=(signed_d - MINUTE).isoformat())
    assert later["intervals"]["signed"] == _stats(1, 150, 150, 150, within_deadline_share=1.0)
    assert later["intervals"]["delivered"]["count"] == 1  # B's later delivery is not a first delivery
    assert _figures(pull, until=(signed_d - MINUTE).isoformat())["intervals"]["signed"]["count"] == 3
    assert _figures(pull, centre="CNTY")["intervals"]["signed"]["count"] == 4
    assert _figures(pull, centre="PROV")["intervals"]["signed"]["count"] == 0
    daily = _figures(pull)["daily"]
    assert sum(day["count"] for day in daily) == 4
    assert [day["date"] for day in daily] == sorted(day["date"] for day in daily)
    assert daily[0]["date"] == known["A"].task.opened_at.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert_problem(pull.get("/turnaround", "supervisor", centre="NOWHERE"), 400, "centre")


def test_breaches_are_listed_with_their_recorded_reason(known: dict[str, History], pull: Alliance) -> None:
    breaches = _figures(pull)["breaches"]
    assert breaches["count"] == 1
    (item,) = breaches["items"]
    assert item["task_id"] == known["C"].task.id and item["priority"] == "STAT" and item["site"] == "TS-DONGGUAN"
    assert item["reason"] == "claimed by reader-ct but not signed in time"
    assert item["breached_at"] == (known["C"].task.opened_at + 31 * MINUTE).isoformat()
    assert item["reader"] == "reader-ct"
    assert _figures(pull, breaches="0")["breaches"] == {"count": 1, "items": []}


def test_a_reader_sees_only_their_own_figures(known: dict[str, History], pull: Alliance) -> None:
    mine = _figures(pull, "senior-ecg")
    assert mine["intervals"]["signed"] == _stats(1, 150, 150, 150, within_deadline_share=1.0)
    assert [row["key"] for row in mine["groups"]["reader"]] == ["senior-ecg"]
    assert_problem(pull.get("/turnaround", "senior-ecg", reader="reader-ct"), 403)


def test_durations_are_real_time_across_a_daylight_saving_change(pull: Alliance) -> None:
    pull.now = datetime(2026, 3, 28, 23, 28, tzinfo=UTC)
    task = made(pull, CT, "DG_CT")  # complete at 00:29 UTC, 01:29 in Berlin; at 01:00 UTC Berlin goes to summer time
    task.claim(2, "reader-ct")
    task.sign(60, "reader-ct")  # 03:29 on the Berlin clock, two hours later by the wall clock, but 60 minutes
    with pull.sessions() as session:
        supervisor = session.scalar(select(User).where(User.name == "supervisor"))
        numbers = figures(session, Filters(), visible_tasks(session, supervisor), pull.now, "Europe/Berlin")
    assert numbers["intervals"]["signed"]["median_minutes"] == 60
    assert numbers["daily"] == [{"date": "2026-03-29", **_stats(1, 60, 60, 60, within_deadline_share=1.0)}]


def test_a_clock_stepped_back_counts_as_no_time_not_negative_time(pull: Alliance) -> None:
    task = made(pull, CT, "DG_CT")
    task.claim(1, "reader-ct")
    task.sign(-5, "reader-ct")  # the server's clock was set back after the study completed
    assert _figures(pull)["intervals"]["signed"] == _stats(1, 0, 0, 0, within_deadline_share=1.0)


def test_an_empty_period_has_counts_of_zero_and_no_figures(pull: Alliance) -> None:
    body = _figures(pull, since="2020-01-01", until="2020-02-01")
    assert body["intervals"]["signed"] == _stats(0, None, None, None, within_deadline_share=None)
    assert body["groups"] == {"site": [], "modality": [], "priority": [], "reader": []}
    assert body["daily"] == [] and body["breaches"] == {"count": 0, "items": []}


# --- the supervisor's actions ---------------------------------------------------------------------------------


def test_a_supervisor_reassigns_with_a_reason_and_the_reader_is_told(known: dict[str, History], pull: Alliance) -> None:
    e = known["E"].task
    refused = [
        (pull.post(f"/tasks/{e.id}/reassign", "reader-ct", {"user": "reader-ct2", "reason": "x"}), 403, None),
        (pull.post(f"/tasks/{e.id}/reassign", "supervisor", {"user": "reader-ecg", "reason": "x"}), 400, "user"),
        (pull.post(f"/tasks/{e.id}/reassign", "supervisor", {"user": "nobody", "reason": "x"}), 400, "user"),
        (pull.post(f"/tasks/{e.id}/reassign", "supervisor", {"user": "reader-ct2", "reason": " "}), 400, "reason"),
        (pull.post(f"/tasks/{known['A'].task.id}/reassign", "supervisor", {"user": "reader-ct2", "reason": "x"}), 409, None),
    ]
    for response, status, parameter in refused:
        assert_problem(response, status, parameter)
    assert pull.task(e.study_uid).holder_id is not None  # nothing changed
    moved = pull.post(f"/tasks/{e.id}/reassign", "supervisor", {"user": "reader-ct2", "reason": "李医师下班"})
    assert moved.status_code == 200, moved.json
    assert moved.json["assignee"]["name"] == "reader-ct2" and moved.json["holder"] is None
    with pull.sessions() as session:
        event = session.scalars(select(TaskEvent).where(TaskEvent.task_id == e.id).order_by(TaskEvent.id.desc())).first()
    assert (event.kind, event.actor, event.detail["user"], event.detail["reason"]) == (
        "reassigned", "supervisor", "reader-ct2", "李医师下班")
    notices = pull.get("/worklist", "reader-ct2").json["notifications"]
    assert notices[0]["kind"] == "reassigned" and "李医师下班" in notices[0]["message"]
    assert pull.post(f"/tasks/{e.id}/claim", "reader-ct").status_code == 403  # no longer theirs
    assert pull.post(f"/tasks/{e.id}/claim", "reader-ct2").status_code == 200


def test_a_supervisor_changes_a_priority_and_the_deadline_follows(known: dict[str, History], pull: Alliance) -> None:
    e = known["E"].task
    assert_problem(pull.post(f"/tasks/{e.id}/priority", "supervisor", {"priority": "URGENT"}), 400, "reason")
    assert_problem(pull.post(f"/tasks/{e.id}/priority", "supervisor", {"priority": "SOON", "reason": "x"}), 400, "priority")
    assert_problem(pull.post(f"/tasks/{e.id}/priority", "supervisor", {"priority": "ROUTINE", "reason": "x"}), 409)
    assert_problem(pull.post(f"/tasks/{e.id}/priority", "dongguan", {"priority": "STAT", "reason": "x"}), 403)
    changed = pull.post(f"/tasks/{e.id}/priority", "supervisor", {"priority": "URGENT", "reason": "胸痛待排"})
    assert changed.status_code == 200, changed.json
    assert changed.json["priority"] == "URGENT" and changed.json["priority_source"] == "supervisor"
    assert changed.json["due_at"] == (e.opened_at + timedelta(minutes=120)).isoformat()
    timeline = pull.get(f"/studies/{e.study_uid}", "supervisor").json["timeline"]
    assert timeline[-1]["kind"] == "priority_changed" and timeline[-1]["detail"]["reason"] == "胸痛待排"


def test_the_live_board_shows_overdue_work_readers_and_silent_stations(known: dict[str, History], pull: Alliance) -> None:
    e = known["E"].task
    pull.now = e.due_at + 90 * MINUTE
    board = pull.get("/backlog", "supervisor").json
    assert board["backlog"]["total"]["overdue"] == 1 and board["backlog"]["by_modality"]["DX"]["overdue"] == 1
    assert board["backlog"]["by_priority"]["ROUTINE"]["overdue"] == 1
    (late,) = board["overdue"]
    assert late["task_id"] == e.id and late["overdue_minutes"] == 90 and late["holder"] == "reader-ct"
    assert late["held_since"] == (e.opened_at + 10 * MINUTE).isoformat()
    readers = {reader["name"]: reader for reader in board["readers"]}
    assert readers["reader-ct"]["holding"] == 1 and readers["reader-ct"]["open"] == 1
    assert readers["reader-ecg"]["on_duty"] is True and "consultant" not in readers  # the province's own
    silent = [station["code"] for station in board["silent_stations"]]
    assert silent == ["TS-DONGGUAN", "TS-XIHE", "VIL-LIJIA", "VIL-ZHAOZHUANG"]  # a day later nobody has sent yet
    dongguan = next(s for s in board["silent_stations"] if s["code"] == "TS-DONGGUAN")
    assert dongguan["last_received_at"] is not None
    assert next(s for s in board["silent_stations"] if s["code"] == "VIL-LIJIA")["last_received_at"] is None
    assert_problem(pull.get("/backlog", "reader-ct"), 403)


# --- the figures' cache --------------------------------------------------------------------------------------


@pytest.fixture
def cached(config: Config, sessions: sessionmaker, tmp_path: Path, redis_server: RedisServer) -> Iterator[Alliance]:
    """The demo alliance (pull mode) with a Redis server: the embedded one, or a redis-server of our own."""
    centres = (CentreConfig(site="CNTY", mode="pull"), CentreConfig(site="PROV", mode="pull"))
    with_redis = config.model_copy(update={
        "reading": config.reading.model_copy(update={"centres": centres}),
        "redis": config.redis.model_copy(update={"url": redis_server.url}),
    })
    yield Alliance(with_redis, sessions, tmp_path / "files")
    clock.set_source(None)


def test_figures_are_kept_a_minute_and_the_worker_computes_the_dashboards_ahead(
    cached: Alliance, redis_server: RedisServer
) -> None:
    a, b = made(cached, CT, "DG_CT"), made(cached, CT, "DG_CT")
    a.claim(1, "reader-ct"), a.sign(30, "reader-ct")
    b.claim(31, "reader-ct")
    assert _figures(cached)["intervals"]["signed"]["count"] == 1
    b.sign(31.5, "reader-ct")
    assert _figures(cached)["intervals"]["signed"]["count"] == 1  # the same figures for up to a minute
    cached.advance(seconds=61)
    assert _figures(cached)["intervals"]["signed"]["count"] == 2

    headers = {"Authorization": f"Bearer {cached.token('supervisor')}"}
    c = made(cached, CT, "DG_CT")
    c.claim(1, "reader-ct")
    assert 'id="signed-count">2<' in cached.client.get("/dashboard", headers=headers).get_data(as_text=True)
    c.sign(1.5, "reader-ct")
    assert 'id="signed-count">2<' in cached.client.get("/dashboard", headers=headers).get_data(as_text=True)
    assert jobs.turnaround_warmup() == 1  # the supervisor and the administrator share one view of the county
    assert 'id="signed-count">3<' in cached.client.get("/dashboard", headers=headers).get_data(as_text=True)

    redis_server.stop()  # a cache that fails never fails the figures
    cached.advance(seconds=61)
    assert _figures(cached)["intervals"]["signed"]["count"] == 3
