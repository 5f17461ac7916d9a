"""The JSON API under /api/v1: authentication, problem details, worklist visibility and order, claims,
consults, urgency marks, study status and timeline, turnaround, and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Any

import pytest
from openapi_spec_validator import validate
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from alliance import CT, ECG, Alliance, assert_problem
from reading_queue import jobs
from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask
from telerad.audit import AuditEvent
from telerad.users import User

def test_requests_without_a_valid_token_are_refused(alliance: Alliance) -> None:
    client = alliance.client
    for headers in ({}, {"Authorization": "Bearer trd_not-a-token"}, {"Authorization": "Basic cmVhZGVyOnB3"},
                    {"Authorization": "Bearer "}):
        response = client.get("/api/v1/worklist", headers=headers)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(client.post("/api/v1/tasks/1/claim"), 401)
    assert_problem(client.get("/api/v1/studies/1.2.3"), 401)
    assert_problem(client.get("/api/v1/turnaround"), 401)
    assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert_problem(client.get("/api/v1/tasks/1/claim"), 405)
    assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-page").mimetype == "text/html"


def test_unexpected_errors_are_problem_details_without_internals(
    alliance: Alliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("reading_queue.api.figures", broken)
    body = assert_problem(alliance.get("/turnaround", "supervisor"), 500)
    assert "secret" not in str(body) and "Traceback" not in str(body)


def test_worklist_shows_each_role_what_access_allows(alliance: Alliance) -> None:
    ct = alliance.study(CT, "DG_CT")  # Dongguan township
    xihe_ecg = alliance.study(ECG, "XH_ECG")  # Xihe township
    lijia_ecg = alliance.study(ECG, "LIJIA_ECG")  # Lijia village, below Dongguan

    def seen(who: str) -> set[int]:
        return {item["task_id"] for item in alliance.worklist(who)}

    assert seen("dongguan") == {ct.id, lijia_ecg.id}
    assert seen("xihe") == {xihe_ecg.id}
    assert seen("lijia") == {lijia_ecg.id}
    assert seen("zhaozhuang") == set()
    assert seen("reader-ecg") == {xihe_ecg.id, lijia_ecg.id}
    assert seen("reader-ct") == {ct.id}
    assert seen("consultant") == set()
    assert seen("supervisor") == {ct.id, xihe_ecg.id, lijia_ecg.id}

    item = next(item for item in alliance.worklist("dongguan") if item["task_id"] == ct.id)
    assert item["patient"] == {"name": "CompressedSamples^CT1", "id": "1CT1"}
    assert item["site"] == {"code": "TS-DONGGUAN", "name": "东关镇卫生院", "name_en": "Dongguan Township Health Centre"}
    assert item["kind"] == "read" and item["state"] == "open" and item["modality"] == "CT"
    assert item["assignee"] == {"name": "reader-ct", "display_name": "影像医师 李强"}
    assert item["holder"] is None and item["escalated"] is False and item["breached"] is False
    assert item["reminders_sent"] == 0


def test_worklist_is_ordered_by_deadline_with_time_left(alliance: Alliance) -> None:
    ct = alliance.study(CT, "DG_CT")
    routine_ecg = alliance.study(ECG, "XH_ECG")
    urgent_ecg = alliance.study(ECG, "LIJIA_ECG")  # the policy makes Lijia's ECGs urgent
    alliance.advance(hours=1)

    items = alliance.worklist("supervisor")
    assert [item["task_id"] for item in items] == [urgent_ecg.id, ct.id, routine_ecg.id]
    assert [item["priority"] for item in items] == ["URGENT", "ROUTINE", "ROUTINE"]
    assert items[0]["priority_source"] == "rule" and items[1]["priority_source"] == "default"
    assert items[0]["seconds_left"] == 3600
    assert items[1]["seconds_left"] == int((ct.due_at - alliance.now).total_seconds()) == 23 * 3600 - 2 * 61
    assert datetime.fromisoformat(items[0]["due_at"]) == urgent_ecg.due_at

    alliance.advance(hours=1, seconds=30)
    assert alliance.worklist("supervisor")[0]["seconds_left"] == -30

    assert [i["task_id"] for i in alliance.worklist("supervisor", modality="ECG")] == [urgent_ecg.id, routine_ecg.id]
    assert [i["task_id"] for i in alliance.worklist("supervisor", priority="ROUTINE")] == [ct.id, routine_ecg.id]
    assert [i["task_id"] for i in alliance.worklist("supervisor", site="TS-XIHE")] == [routine_ecg.id]
    assert [i["task_id"] for i in alliance.worklist("supervisor", limit=1, offset=1)] == [ct.id]
    assert alliance.worklist("supervisor", state="signed") == []
    assert len(alliance.worklist("supervisor", state="open,claimed,open")) == 3

    for name, value in (("limit", "0"), ("limit", "501"), ("limit", "ten"), ("offset", "-1"), ("state", "done"),
                        ("priority", "HIGH"), ("modality", "PET"), ("site", "NOWHERE")):
        assert_problem(alliance.get("/worklist", "supervisor", **{name: value}), 400, parameter=name)


def test_claim_renew_conflict_and_release(alliance: Alliance) -> None:
    task = alliance.study(CT, "DG_DR", Modality="DX")  # pushed to reader-ct (least work, first by name)
    assert task.assignee_id is not None
    alliance.advance(minutes=1)

    claimed = alliance.post(f"/tasks/{task.id}/claim", "reader-ct")
    assert claimed.status_code == 200, claimed.json
    assert claimed.json["holder"] == {"name": "reader-ct", "display_name": "影像医师 李强"}
    assert claimed.json["state"] == "claimed" and claimed.json["task_id"] == task.id
    assert datetime.fromisoformat(claimed.json["lease_until"]) == alliance.now + timedelta(minutes=20)

    assert_problem(alliance.post(f"/tasks/{task.id}/claim", "reader-ct2"), 403)  # pushed to someone else
    assert_problem(alliance.post(f"/tasks/{task.id}/claim", "reader-ecg"), 403)  # not qualified for DX
    assert_problem(alliance.post(f"/tasks/{task.id}/claim", "dongguan"), 403)
    assert_problem(alliance.post("/tasks/999999/claim", "reader-ct"), 404)
    assert_problem(alliance.post("/tasks/999999/release", "reader-ct"), 404)

    alliance.advance(hours=22)  # past the escalation point, and the first lease has lapsed
    reclaimed = alliance.post(f"/tasks/{task.id}/claim", "reader-ct")
    assert reclaimed.status_code == 200
    assert datetime.fromisoformat(reclaimed.json["lease_until"]) == alliance.now + timedelta(minutes=20)
    jobs.sla_sweep()
    response = alliance.get("/worklist", "reader-ct2")
    assert [n["kind"] for n in response.json["notifications"]] == ["escalation"]
    assert response.json["items"][0]["escalated"] is True

    conflict = assert_problem(alliance.post(f"/tasks/{task.id}/claim", "reader-ct2"), 409)
    assert "影像医师 李强" in conflict["detail"]
    assert_problem(alliance.post(f"/tasks/{task.id}/release", "reader-ct2"), 409)

    released = alliance.post(f"/tasks/{task.id}/release", "reader-ct")
    assert released.status_code == 200
    assert released.json["holder"] is None and released.json["state"] == "open"
    taken = alliance.post(f"/tasks/{task.id}/claim", "reader-ct2")
    assert taken.status_code == 200 and taken.json["holder"]["name"] == "reader-ct2"

    timeline = alliance.get(f"/studies/{task.study_uid}", "supervisor").json["timeline"]
    assert [(e["kind"], e["actor"]) for e in timeline[1:]] == [
        ("assigned", "system"), ("claimed", "reader-ct"), ("released", "system"), ("claimed", "reader-ct"),
        ("escalated", "system"), ("released", "reader-ct"), ("claimed", "reader-ct2"),
    ]


def test_consult_request_and_answer_are_on_the_study_timeline(alliance: Alliance) -> None:
    task = alliance.study(CT, "DG_CT")
    assert alliance.post(f"/tasks/{task.id}/claim", "reader-ct").status_code == 200

    assert_problem(alliance.post(f"/tasks/{task.id}/consult", "reader-ct", None), 400)
    assert_problem(alliance.post(f"/tasks/{task.id}/consult", "reader-ct", {"question": 5}), 400, "question")
    assert_problem(alliance.post(f"/tasks/{task.id}/consult", "reader-ct", {"question": "  "}), 400)
    assert_problem(alliance.post(f"/tasks/{task.id}/consult", "reader-ct2", {"question": "?"}), 409)
    assert_problem(alliance.post("/tasks/999999/consult", "reader-ct", {"question": "?"}), 404)

    asked = alliance.post(f"/tasks/{task.id}/consult", "reader-ct", {"question": "右肺结节性质？"})
    assert asked.status_code == 201, asked.json
    consult = asked.json
    assert consult["kind"] == "consult" and consult["parent_task_id"] == task.id and consult["state"] == "open"
    assert [item["task_id"] for item in alliance.worklist("consultant")] == [consult["task_id"]]

    alliance.advance(minutes=30)
    assert alliance.post(f"/tasks/{consult['task_id']}/claim", "consultant").status_code == 200
    path = f"/tasks/{consult['task_id']}/answer"
    assert_problem(alliance.post(path, "consultant", {"answer": "良性可能大", "mode": "sign"}), 400, "mode")
    assert_problem(alliance.post(path, "consultant", {"mode": "co-sign"}), 400, "answer")
    assert_problem(alliance.post(path, "reader-ct", {"answer": "x", "mode": "co-sign"}), 409)
    answered = alliance.post(path, "consultant", {"answer": "良性可能大", "mode": "co-sign"})
    assert answered.status_code == 200 and answered.json["state"] == "signed"
    assert answered.json["seconds_left"] is None

    reader_view = alliance.get(f"/studies/{task.study_uid}", "reader-ct").json
    assert reader_view["status"] == "being_read"
    assert [t["task_id"] for t in reader_view["tasks"]] == [task.id]
    requested, answered_event = (
        next(e for e in reader_view["timeline"] if e["kind"] == kind) for kind in ("consult_requested", "consult_answered")
    )
    assert requested["actor"] == "reader-ct" and requested["detail"]["question"] == "右肺结节性质？"
    assert answered_event["actor"] == "consultant" and answered_event["detail"]["mode"] == "co-sign"
    assert answered_event["detail"]["answer"] == "良性可能大"

    station_view = alliance.get(f"/studies/{task.study_uid}", "dongguan").json
    assert {t["kind"] for t in station_view["tasks"]} == {"read", "consult"}
    times = [e["at"] for e in station_view["timeline"]]
    assert times == sorted(times, key=datetime.fromisoformat)


def test_station_urgency_changes_priority_and_deadline(alliance: Alliance, sessions: sessionmaker) -> None:
    task = alliance.study(CT, "DG_CT")
    assert task.priority == "ROUTINE"
    alliance.advance(minutes=5)

    marked = alliance.post(f"/studies/{task.study_uid}/urgency", "dongguan", {"priority": "STAT"})
    assert marked.status_code == 200, marked.json
    assert marked.json["marked_by"] == "dongguan" and marked.json["task"]["priority"] == "STAT"
    assert marked.json["task"]["priority_source"] == "station"
    with sessions() as session:
        changed = session.get(ReadingTask, task.id)
    assert changed.due_at == task.opened_at + timedelta(minutes=30)
    assert changed.next_check_at == task.opened_at + timedelta(minutes=15)  # first reminder at half the time
    assert alliance.post(f"/studies/{task.study_uid}/urgency", "dongguan", {"priority": "STAT"}).status_code == 200

    timeline = alliance.get(f"/studies/{task.study_uid}", "dongguan").json["timeline"]
    changes = [e for e in timeline if e["kind"] == "priority_changed"]
    assert len(changes) == 1
    assert changes[0]["actor"] == "dongguan" and changes[0]["detail"]["reason"] == "marked by station"
    assert changes[0]["detail"]["previous"] == "ROUTINE" and changes[0]["detail"]["priority"] == "STAT"
    assert alliance.worklist("reader-ct")[0]["seconds_left"] == 25 * 60

    assert_problem(alliance.post(f"/studies/{task.study_uid}/urgency", "xihe", {"priority": "URGENT"}), 404)
    assert_problem(alliance.post(f"/studies/{task.study_uid}/urgency", "reader-ct", {"priority": "URGENT"}), 403)
    assert_problem(alliance.post(f"/studies/{task.study_uid}/urgency", "dongguan", {"priority": "SOON"}), 400, "priority")
    assert_problem(alliance.post(f"/studies/{task.study_uid}/urgency", "dongguan", {}), 400, "priority")
    assert_problem(alliance.post("/studies/1.2.3.4/urgency", "dongguan", {"priority": "STAT"}), 404)

    waiting = alliance.receive(CT, "DG_CT")  # not complete yet: no task, the mark waits for it
    early = alliance.post(f"/studies/{waiting}/urgency", "dongguan", {"priority": "URGENT"})
    assert early.status_code == 200 and early.json["task"] is None
    made = alliance.complete(waiting)
    assert (made.priority, made.priority_source) == ("URGENT", "station")
    assert made.due_at == made.opened_at + timedelta(minutes=120)


def test_study_status_and_who_may_see_it(alliance: Alliance, sessions: sessionmaker) -> None:
    uid = alliance.receive(CT, "DG_CT")
    received = alliance.get(f"/studies/{uid}", "dongguan")
    assert received.status_code == 200, received.json
    assert received.json["status"] == "received" and received.json["tasks"] == [] and received.json["timeline"] == []
    study = received.json["study"]
    assert study["study_uid"] == uid and study["state"] == "receiving" and study["completed_at"] is None
    assert study["modalities"] == ["CT"] and study["num_instances"] == 1 and study["site"]["code"] == "TS-DONGGUAN"
    assert study["patient"]["id"] == "1CT1"

    task = alliance.complete(uid)
    status = alliance.get(f"/studies/{uid}", "dongguan").json
    assert status["status"] == "waiting" and status["study"]["state"] == "complete"
    assert datetime.fromisoformat(status["study"]["completed_at"]) == task.opened_at
    assert [t["task_id"] for t in status["tasks"]] == [task.id]
    assert [e["kind"] for e in status["timeline"]] == ["created", "assigned"]

    alliance.post(f"/tasks/{task.id}/claim", "reader-ct")
    assert alliance.get(f"/studies/{uid}", "supervisor").json["status"] == "being_read"
    with sessions() as session, session.begin():
        mark_signed(session, session.get(ReadingTask, task.id), session.scalar(select(User).where(User.name == "reader-ct")),
                    alliance.now)
    assert alliance.get(f"/studies/{uid}", "reader-ct").json["status"] == "reported"

    unknown = assert_problem(alliance.get("/studies/1.2.3.4", "xihe"), 404)
    hidden = assert_problem(alliance.get(f"/studies/{uid}", "xihe"), 404)
    assert hidden["detail"] == unknown["detail"].replace("1.2.3.4", uid)
    assert_problem(alliance.get(f"/studies/{uid}", "lijia"), 404)
    assert_problem(alliance.get(f"/studies/{uid}", "reader-ecg"), 404)
    with sessions() as session:
        viewers = session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "study.viewed").order_by(AuditEvent.id)).all()
    assert viewers == ["dongguan", "dongguan", "supervisor", "reader-ct"]


def test_turnaround_figures_filters_and_visibility(alliance: Alliance, sessions: sessionmaker) -> None:
    ct = alliance.study(CT, "DG_CT")
    alliance.study(ECG, "XH_ECG")
    alliance.post(f"/tasks/{ct.id}/claim", "reader-ct")
    alliance.now = ct.opened_at + timedelta(minutes=90)
    with sessions() as session, session.begin():
        reader = session.scalar(select(User).where(User.name == "reader-ct"))
        mark_signed(session, session.get(ReadingTask, ct.id), reader, alliance.now)

    def figures(who: str, **query: str) -> dict[str, Any]:
        response = alliance.get("/turnaround", who, **query)
        assert response.status_code == 200, response.json
        return response.json

    everything = figures("supervisor")
    assert everything["signed"] == {"count": 1, "median_minutes": 90.0, "p90_minutes": 90.0, "within_deadline_share": 1.0}
    assert everything["backlog"]["under_24h"] == 1
    assert figures("supervisor", site="TS-DONGGUAN")["signed"]["count"] == 1
    assert figures("supervisor", site="TS-XIHE")["signed"]["count"] == 0
    assert figures("supervisor", site="TS-XIHE")["backlog"]["under_24h"] == 1
    assert figures("supervisor", modality="ECG")["signed"]["count"] == 0
    assert figures("supervisor", priority="ROUTINE")["signed"]["count"] == 1
    assert figures("supervisor", since="2026-03-04")["signed"]["count"] == 1  # Shanghai midnight
    assert figures("supervisor", since="2026-03-05")["signed"]["count"] == 0
    assert figures("supervisor", until="2026-03-04T04:00:00Z")["signed"]["count"] == 0
    assert figures("supervisor", since="2026-03-04T04:00:00+00:00")["filters"]["since"] == "2026-03-04T04:00:00+00:00"

    assert figures("dongguan")["signed"]["count"] == 1
    assert figures("xihe")["signed"]["count"] == 0 and figures("xihe")["backlog"]["under_24h"] == 1
    assert figures("reader-ct")["signed"]["count"] == 1
    assert figures("reader-ct2")["signed"]["count"] == 0
    assert_problem(alliance.get("/turnaround", "reader-ct2", reader="reader-ct"), 403)

    assert_problem(alliance.get("/turnaround", "supervisor", since="yesterday"), 400, "since")
    assert_problem(alliance.get("/turnaround", "supervisor", until="2026-13-01"), 400, "until")
    assert_problem(alliance.get("/turnaround", "supervisor", since="2026-03-05", until="2026-03-04"), 400, "until")
    assert_problem(alliance.get("/turnaround", "supervisor", site="NOWHERE"), 400, "site")
    assert_problem(alliance.get("/turnaround", "supervisor", priority="soon"), 400, "priority")


def test_a_supervisor_puts_a_reader_on_duty_and_the_next_study_goes_to_them(alliance: Alliance) -> None:
    saturday = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # reader-ct2 works Monday to Friday
    alliance.now = saturday
    shift = {"user": "reader-ct2", "starts_at": "2026-11-28T08:00:00", "ends_at": "2026-11-28T20:00:00", "on_duty": True}
    assert_problem(alliance.post("/duty", "reader-ct", shift), 403)
    assert_problem(alliance.post("/duty", "supervisor", {**shift, "ends_at": "2026-11-28T07:00:00"}), 400)
    assert_problem(alliance.post("/duty", "supervisor", {**shift, "user": "nobody"}), 400)
    assert_problem(alliance.post("/duty", "supervisor", {**shift, "on_duty": "yes"}), 400)
    busy = alliance.study(CT, "XH_DR", Modality="DX")  # reader-ct is the only DX reader on duty
    assert busy.assignee_id is not None
    created = alliance.post("/duty", "supervisor", shift)
    assert created.status_code == 201 and created.json["set_by"] == "supervisor"
    assert created.json["starts_at"] == "2026-11-28T00:00:00+00:00"  # 08:00 in Shanghai
    called_in = alliance.study(CT, "XH_DR", Modality="DX")
    with alliance.sessions() as session:
        assert session.get(User, called_in.assignee_id).name == "reader-ct2"


def test_openapi_document_is_valid_and_lists_every_endpoint(alliance: Alliance) -> None:
    response = alliance.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json
    validate(document)
    served = {
        (rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace("<", "{").replace(">", "}"), method.lower())
        for rule in alliance.client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == described
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "An API token from `telerad token create NAME`."
    }


def test_health_and_metrics_show_the_archive_and_the_queue(alliance: Alliance) -> None:
    alliance.study(CT, "DG_CT")
    assert alliance.client.get("/healthz").json == {"status": "ok", "database": "ok"}
    alliance.advance(hours=25)  # a routine study is overdue after a day
    metrics = alliance.client.get("/metrics").get_data(as_text=True)
    assert "telerad_instances 1.0" in metrics
    assert 'telerad_studies{state="complete"} 1.0' in metrics
    assert 'telerad_open_tasks{priority="ROUTINE",state="open"} 1.0' in metrics
    assert "telerad_overdue_tasks 1.0" in metrics
