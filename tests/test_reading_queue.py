"""The reading queue as its people meet it: priority and deadlines, tiers, who gets the work, claims,
the service-level clock with its reminders, escalations and breaches, webhooks, the event path from a
completed study to one task, and turnaround figures.

Studies are real files (pydicom's bundled CT and 12-lead ECG, with new UIDs) taken in by the archive
and completed by the node's own sweep; time is the injected clock, never a sleep.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from rq import SimpleWorker
from rq.queue import Queue
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from conftest import RedisServer, free_port
from dicom_files import copy_with_new_uids
from pacs_node.archive import Archive
from pacs_node.index import complete_stable_studies
from pacs_node.node import load_senders, storage_for
from reading_queue import claims, consult, jobs
from reading_queue.access import visible_tasks
from reading_queue.assignment import DutyShift
from reading_queue.claims import ClaimError
from reading_queue.consult import ConsultError
from reading_queue.notify import Notification, WebhookDelivery, deliver_webhooks
from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask, TaskEvent, UrgencyMark
from reading_queue.turnaround import Filters, figures
from telerad import broker, clock, events
from telerad.config import CentreConfig, Config, DutyConfig
from telerad.db import make_engine, make_session_factory
from telerad.events import OutboxEvent
from telerad.sites import Site
from telerad.users import User

CT = Path(get_testdata_file("CT_small.dcm"))
ECG = Path(get_testdata_file("waveform_ecg.dcm"))

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
#: Tuesday 10:00 in Asia/Shanghai (the rosters' zone): every reader of the demo alliance is on duty.
TUESDAY = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
#: Monday 20:00 in Asia/Shanghai: reader-ct2 (Mon–Fri 08–18) has gone home, reader-ct is on duty.
MONDAY_EVENING = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
#: Saturday 10:00 in Asia/Shanghai: reader-ct2 does not work weekends.
SATURDAY = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
PULL_EVERYWHERE = (CentreConfig(site="CNTY", mode="pull"), CentreConfig(site="PROV", mode="pull"))


class Desk:
    """The alliance at work: stations send studies, the node completes them, the worker makes tasks."""

    def __init__(self, config: Config, sessions: sessionmaker, at: list[datetime], folder: Path) -> None:
        self.config, self.sessions, self.at, self.folder = config, sessions, at, folder
        self.archive = Archive(storage_for(config), sessions)
        self.senders = load_senders(sessions)
        with sessions() as session:
            self.ids = dict(session.execute(select(User.name, User.id)).all())
            self.sites = dict(session.execute(select(Site.id, Site.code)).all())
        self.names = {user_id: name for name, user_id in self.ids.items()}
        jobs.configure(config, sessions)

    @property
    def policy(self):
        return self.config.reading

    @property
    def now(self) -> datetime:
        return self.at[0]

    def reconfigure(self, **reading: Any) -> None:
        """Change the reading section of the configuration, as an administrator would, and restart the jobs."""
        self.config = self.config.model_copy(update={"reading": self.config.reading.model_copy(update=reading)})
        jobs.configure(self.config, self.sessions)

    # -- studies -------------------------------------------------------------------------------------------

    def send(self, source: Path, ae: str, *, done: datetime | None = None, mark: str | None = None, **changes) -> str:
        """A station sends a one-instance study that will be stable at ``done`` (default: now); the clock moves there."""
        done = done or self.now
        uid = changes.pop("StudyInstanceUID", None) or generate_uid()
        self.at[0] = done - timedelta(seconds=self.config.dicom.stable_seconds)
        path = copy_with_new_uids(source, self.folder, StudyInstanceUID=uid, **changes)
        self.archive.receive(path.read_bytes(), self.senders[ae])
        if mark:
            with self.sessions() as session, session.begin():
                session.add(UrgencyMark(study_uid=uid, priority=mark, marked_by="station", marked_at=self.now))
        self.at[0] = done
        return uid

    def complete(self) -> list[str]:
        """The node's housekeeping round: stable studies are announced in the outbox."""
        with self.sessions() as session, session.begin():
            return complete_stable_studies(session, self.config.dicom.stable_seconds)

    def handle_events(self) -> None:
        """What the relay and a worker do, without Redis: every waiting event is dispatched once."""
        with self.sessions() as session, session.begin():
            waiting = session.scalars(select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)).order_by(OutboxEvent.id))
            todo = []
            for event in waiting:
                event.sent_at = clock.now()
                todo.append((event.id, event.topic, event.payload))
        for event_id, topic, payload in todo:
            events.dispatch(event_id, topic, payload)

    def study(self, source: Path = CT, ae: str = "DG_CT", **options) -> ReadingTask:
        """A study sent, completed at ``done`` (default: now) and made into its task."""
        uid = self.send(source, ae, **options)
        self.complete()
        self.handle_events()
        return self.task_of(uid)

    def dx(self, ae: str = "XH_DR", **options) -> ReadingTask:
        """An X-ray (the bundled CT file relabelled as DX: only the modality matters to the queue)."""
        return self.study(CT, ae, Modality="DX", **options)

    # -- looking -------------------------------------------------------------------------------------------

    def task(self, task_id: int) -> ReadingTask:
        with self.sessions() as session:
            return session.get(ReadingTask, task_id)

    def task_of(self, study_uid: str) -> ReadingTask:
        with self.sessions() as session:
            return session.scalars(select(ReadingTask).where(ReadingTask.study_uid == study_uid)).one()

    def assignee(self, task: ReadingTask) -> str | None:
        return self.names.get(self.task(task.id).assignee_id)

    def holder(self, task: ReadingTask) -> str | None:
        return self.names.get(self.task(task.id).holder_id)

    def timeline(self, task: ReadingTask) -> list[tuple[str, str, dict]]:
        with self.sessions() as session:
            rows = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task.id).order_by(TaskEvent.id))
            return [(row.kind, row.actor, row.detail) for row in rows]

    def kinds(self, task: ReadingTask) -> list[str]:
        return [kind for kind, _, _ in self.timeline(task)]

    def notices(self, task: ReadingTask | None = None) -> list[tuple[str, str]]:
        """(who, what) of the in-app notices, oldest first."""
        with self.sessions() as session:
            query = select(Notification).order_by(Notification.id)
            if task is not None:
                query = query.where(Notification.task_id == task.id)
            return [(self.names[row.user_id], row.kind) for row in session.scalars(query)]

    # -- acting --------------------------------------------------------------------------------------------

    def claim(self, task: ReadingTask, name: str) -> ReadingTask:
        with self.sessions() as session, session.begin():
            return claims.claim(session, self.policy, task.id, session.get(User, self.ids[name]), self.now)

    def release(self, task: ReadingTask, name: str) -> ReadingTask:
        with self.sessions() as session, session.begin():
            return claims.release(session, task.id, session.get(User, self.ids[name]))

    def sign(self, task: ReadingTask, name: str, when: datetime) -> None:
        self.at[0] = when
        with self.sessions() as session, session.begin():
            mark_signed(session, session.get(ReadingTask, task.id), session.get(User, self.ids[name]), when)

    def sweep(self, when: datetime) -> dict[str, int]:
        """The periodic job, run by the worker's cron at ``when``."""
        self.at[0] = when
        return jobs.sla_sweep()

    def shift(self, name: str, starts: datetime, ends: datetime, on_duty: bool) -> None:
        """A supervisor's change to the roster."""
        with self.sessions() as session, session.begin():
            session.add(
                DutyShift(user_id=self.ids[name], starts_at=starts, ends_at=ends, on_duty=on_duty, set_by="supervisor")
            )


@pytest.fixture
def desk(config: Config, sessions: sessionmaker, at: list[datetime], tmp_path: Path) -> Iterator[Desk]:
    at[0] = TUESDAY
    yield Desk(config, sessions, at, tmp_path / "sent")
    jobs._context = None  # noqa: SLF001 - the next test configures its own


NOTHING = {"expired": 0, "reminded": 0, "escalated": 0, "breached": 0, "webhooks_posted": 0}


# -- priority and deadline ------------------------------------------------------------------------------------


def test_priority_comes_from_the_station_then_the_study_then_a_rule_then_the_default(desk: Desk):
    done = desk.now
    tasks = [
        desk.study(CT, "DG_CT", mark="STAT", RequestedProcedurePriority="LOW"),  # the station's mark wins
        desk.study(CT, "DG_CT", StudyPriorityID="HIGH"),  # the study's own priority
        desk.study(ECG, "LIJIA_ECG", RequestedProcedurePriority="MEDIUM"),  # the study beats the rule for Lijia ECGs
        desk.study(ECG, "LIJIA_ECG"),  # rule: ECG from VIL-LIJIA is urgent
        desk.study(ECG, "XH_ECG"),  # the default
    ]
    assert [(task.priority, task.priority_source, task.due_at - task.opened_at) for task in tasks] == [
        ("STAT", "station", 30 * MINUTE),
        ("URGENT", "study", 2 * HOUR),
        ("ROUTINE", "study", 24 * HOUR),
        ("URGENT", "rule", 2 * HOUR),
        ("ROUTINE", "default", 24 * HOUR),
    ]
    assert {task.opened_at for task in tasks} == {done}  # the clock starts at the study's completion
    created = [desk.timeline(task)[0] for task in tasks]
    assert [(kind, detail["priority"], detail["priority_source"]) for kind, _, detail in created] == [
        ("created", "STAT", "station"),
        ("created", "URGENT", "study"),
        ("created", "ROUTINE", "study"),
        ("created", "URGENT", "rule"),
        ("created", "ROUTINE", "default"),
    ]
    assert created[0][2]["due_at"] == (done + 30 * MINUTE).isoformat()


# -- tiers and consults --------------------------------------------------------------------------------------


def test_village_and_township_studies_are_read_at_the_county(desk: Desk):
    village_ecg = desk.study(ECG, "LIJIA_ECG")
    village_dx = desk.dx("ZZ_DR")
    township_ct = desk.study(CT, "DG_CT")
    township_dx = desk.dx("XH_DR")
    provincial = desk.study(CT, "PROV_PACS")
    assert [(desk.sites[t.source_site_id], desk.sites[t.centre_site_id], t.service, t.modality) for t in (
        village_ecg, village_dx, township_ct, township_dx, provincial
    )] == [
        ("VIL-LIJIA", "CNTY", "ecg", "ECG"),
        ("VIL-ZHAOZHUANG", "CNTY", "imaging", "DX"),
        ("TS-DONGGUAN", "CNTY", "imaging", "CT"),
        ("TS-XIHE", "CNTY", "imaging", "DX"),
        ("PROV", "PROV", "imaging", "CT"),
    ]
    assert {task.kind for task in (village_ecg, village_dx, township_ct, township_dx, provincial)} == {"read"}


def _ask(desk: Desk, task: ReadingTask, name: str, question: str) -> ReadingTask:
    with desk.sessions() as session, session.begin():
        return consult.request_consult(
            session, desk.policy, session.get(ReadingTask, task.id), session.get(User, desk.ids[name]), question, desk.now
        )


def _answer(desk: Desk, task: ReadingTask, name: str, answer: str, mode: str) -> None:
    with desk.sessions() as session, session.begin():
        consult.answer_consult(
            session, session.get(ReadingTask, task.id), session.get(User, desk.ids[name]), answer, mode, desk.now
        )


def test_a_consult_is_a_linked_task_at_the_province_answered_on_both_timelines(desk: Desk):
    task = desk.study(CT, "DG_CT", StudyPriorityID="HIGH")
    assert desk.assignee(task) == "reader-ct"
    with pytest.raises(ConsultError) as not_held:
        _ask(desk, task, "reader-ct", "结节性质？")  # assigned, but not claimed yet
    assert not_held.value.status == 409
    desk.claim(task, "reader-ct")
    with pytest.raises(ConsultError) as not_holder:
        _ask(desk, task, "reader-ct2", "结节性质？")
    assert not_holder.value.status == 409
    with pytest.raises(ConsultError) as no_question:
        _ask(desk, task, "reader-ct", "  ")
    assert no_question.value.status == 400

    desk.at[0] += 10 * MINUTE
    asked_at = desk.now
    first = _ask(desk, task, "reader-ct", "右肺上叶结节，请会诊")
    assert (first.kind, first.parent_id, desk.sites[first.centre_site_id]) == ("consult", task.id, "PROV")
    assert (first.priority, first.priority_source) == ("URGENT", "consult")
    assert (first.opened_at, first.due_at) == (asked_at, asked_at + 240 * MINUTE)  # its own, longer deadline
    assert desk.timeline(first)[1] == ("offered", "system", {"users": ["consultant"], "mode": "pull"})
    assert desk.timeline(task)[-1][:2] == ("consult_requested", "reader-ct")
    assert desk.timeline(task)[-1][2]["consult_task_id"] == first.id

    with pytest.raises(ClaimError) as county_reader:
        desk.claim(first, "reader-ct")  # consults are for the province's consultants
    assert county_reader.value.status == 403
    desk.claim(first, "consultant")
    with pytest.raises(ConsultError) as wrong_answerer:
        _answer(desk, first, "reader-ct", "我来答", "co-sign")
    assert wrong_answerer.value.status == 409
    with pytest.raises(ConsultError) as wrong_mode:
        _answer(desk, first, "consultant", "改写报告", "rewrite")
    assert wrong_mode.value.status == 400
    desk.at[0] += 30 * MINUTE
    _answer(desk, first, "consultant", "同意原诊断", "co-sign")
    assert desk.task(first.id).state == "signed"

    second = _ask(desk, task, "reader-ct", "再请看纵隔")
    desk.claim(second, "consultant")
    _answer(desk, second, "consultant", "纵隔淋巴结稍大，建议随访", "addendum")

    answers = [(actor, detail.get("mode"), detail.get("answer"), detail.get("consult_task_id"))
               for kind, actor, detail in desk.timeline(task) if kind == "consult_answered"]
    assert answers == [
        ("consultant", "co-sign", "同意原诊断", first.id),
        ("consultant", "addendum", "纵隔淋巴结稍大，建议随访", second.id),
    ]
    assert [(kind, detail.get("mode")) for kind, _, detail in desk.timeline(second)][-1] == ("consult_answered", "addendum")
    assert desk.task(task.id).state == "claimed"  # the county reader still signs the report


# -- who gets the work ----------------------------------------------------------------------------------------


def test_push_gives_work_to_the_qualified_reader_on_duty_with_the_least_weighted_load(desk: Desk):
    spread = [desk.assignee(desk.dx()) for _ in range(2)]
    assert spread == ["reader-ct", "reader-ct2"]  # X-rays: both are qualified and on duty
    assert [desk.assignee(desk.study(CT, "DG_CT")) for _ in range(2)] == ["reader-ct", "reader-ct"]  # CT: only one
    # reader-ct: 3 routine tasks (load 3); reader-ct2: 1 (load 1)
    stat = desk.dx(mark="STAT")
    assert desk.assignee(stat) == "reader-ct2"  # reader-ct2 now carries 1 + 4 (due within the hour)
    assert desk.assignee(desk.dx()) == "reader-ct"  # 3 < 5 although reader-ct has more studies
    assert desk.assignee(desk.dx()) == "reader-ct"  # 4 < 5
    # 5 against 5: the one with fewer studies (reader-ct2: 2, reader-ct: 5) gets the next
    assert desk.assignee(desk.dx()) == "reader-ct2"
    # signed work weighs nothing: reader-ct2 is down to 2 routine studies
    desk.sign(stat, "reader-ct2", desk.now + 5 * MINUTE)
    assert desk.assignee(desk.dx()) == "reader-ct2"
    assert desk.assignee(desk.dx()) == "reader-ct2"  # 3 < 5
    assert desk.timeline(stat)[1] == ("assigned", "system", {"user": "reader-ct2", "mode": "push"})


def test_only_readers_on_duty_get_work_and_a_supervisor_shift_overrides_the_roster(desk: Desk):
    desk.at[0] = SATURDAY
    assert [desk.assignee(desk.dx()) for _ in range(2)] == ["reader-ct", "reader-ct"]  # reader-ct2 works Mon–Fri
    desk.shift("reader-ct2", SATURDAY - HOUR, SATURDAY + 2 * HOUR, on_duty=True)  # called in for the morning
    assert desk.assignee(desk.dx(done=SATURDAY + HOUR)) == "reader-ct2"
    assert desk.assignee(desk.dx(done=SATURDAY + 3 * HOUR)) == "reader-ct"  # the extra shift is over

    tuesday_1759 = datetime(2026, 12, 1, 9, 59, tzinfo=UTC)  # 17:59 in Shanghai, the Tuesday after
    assert desk.assignee(desk.dx(done=tuesday_1759)) == "reader-ct2"
    assert desk.assignee(desk.dx(done=tuesday_1759 + 31 * MINUTE)) == "reader-ct"  # 18:30: reader-ct2 has left

    evening = tuesday_1759 + 2 * HOUR
    desk.shift("reader-ct", evening - HOUR, evening + HOUR, on_duty=False)  # the only CT reader, off
    nobody = desk.study(CT, "DG_CT", done=evening)
    assert desk.assignee(nobody) is None
    assert desk.timeline(nobody)[-1] == ("offered", "system", {"users": [], "mode": "push"})


def test_routine_ecgs_go_to_the_general_reader_and_stat_ecgs_to_whoever_has_less_work(desk: Desk):
    assert [desk.assignee(desk.study(ECG, "XH_ECG")) for _ in range(3)] == ["reader-ecg"] * 3  # not the expert
    stat = [desk.study(ECG, "XH_ECG", mark="STAT") for _ in range(2)]
    assert [desk.assignee(task) for task in stat] == ["senior-ecg", "reader-ecg"]  # 0 < 3, then 3 < 4
    with pytest.raises(ClaimError) as expert:
        desk.claim(desk.study(ECG, "XH_ECG"), "senior-ecg")  # routine work is not offered to the expert
    assert expert.value.status == 403
    desk.shift("reader-ecg", desk.now - HOUR, desk.now + 8 * HOUR, on_duty=False)
    assert desk.assignee(desk.study(ECG, "XH_ECG")) == "senior-ecg"  # but with nobody else on duty, it is read


def test_in_pull_mode_tasks_are_offered_to_the_eligible_readers_and_any_of_them_may_claim(desk: Desk):
    desk.reconfigure(centres=PULL_EVERYWHERE)
    first, second = desk.dx(), desk.dx()
    ecg = desk.study(ECG, "XH_ECG")
    assert (desk.assignee(first), desk.assignee(ecg)) == (None, None)
    assert desk.timeline(first)[-1] == ("offered", "system", {"users": ["reader-ct", "reader-ct2"], "mode": "pull"})
    assert desk.timeline(ecg)[-1] == ("offered", "system", {"users": ["reader-ecg"], "mode": "pull"})
    with pytest.raises(ClaimError) as unqualified:
        desk.claim(first, "reader-ecg")
    assert unqualified.value.status == 403
    desk.claim(first, "reader-ct2")
    desk.claim(second, "reader-ct")
    assert (desk.holder(first), desk.holder(second)) == ("reader-ct2", "reader-ct")


# -- claims ---------------------------------------------------------------------------------------------------


def test_a_claim_is_a_lease_renewed_by_its_holder_refused_to_others_and_released_when_it_runs_out(desk: Desk):
    desk.reconfigure(centres=PULL_EVERYWHERE)
    task = desk.dx()
    start = desk.now
    claimed = desk.claim(task, "reader-ct")
    assert (claimed.state, desk.holder(task), claimed.lease_until) == ("claimed", "reader-ct", start + 20 * MINUTE)
    desk.at[0] = start + 15 * MINUTE
    assert desk.claim(task, "reader-ct").lease_until == start + 35 * MINUTE  # still reading: renewed
    with pytest.raises(ClaimError) as taken:
        desk.claim(task, "reader-ct2")
    assert taken.value.status == 409 and "影像医师 李强" in str(taken.value)
    with pytest.raises(ClaimError) as not_yours:
        desk.release(task, "reader-ct2")
    assert not_yours.value.status == 409

    assert desk.sweep(start + 34 * MINUTE) == NOTHING
    assert desk.sweep(start + 35 * MINUTE) == NOTHING | {"expired": 1}
    back = desk.task(task.id)
    assert (back.state, back.holder_id, back.lease_until) == ("open", None, None)
    assert desk.timeline(task)[-1] == ("released", "system", {"reason": "lease expired", "holder_id": desk.ids["reader-ct"]})

    desk.claim(task, "reader-ct2")
    desk.release(task, "reader-ct2")
    assert desk.task(task.id).state == "open"
    with pytest.raises(ClaimError) as twice:
        desk.release(task, "reader-ct2")
    assert twice.value.status == 409
    assert [(kind, actor) for kind, actor, _ in desk.timeline(task)] == [
        ("created", "event:1"), ("offered", "system"), ("claimed", "reader-ct"), ("renewed", "reader-ct"),
        ("released", "system"), ("claimed", "reader-ct2"), ("released", "reader-ct2"),
    ]


def _try_claim(sessions: sessionmaker, policy, task_id: int, name: str, at: datetime) -> str | int:
    """One reader's claim in its own transaction: ``"won"`` or the refusal's status."""
    try:
        with sessions() as session, session.begin():
            claims.claim(session, policy, task_id, session.scalars(select(User).where(User.name == name)).one(), at)
        return "won"
    except ClaimError as refused:
        return refused.status


def _claimer(url: str, policy, name: str, task_ids: list[int], at: datetime, barrier, results) -> None:
    """A reader in another process, claiming each task at the same instant as its rival."""
    clock.set_source(lambda: at)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        for task_id in task_ids:
            barrier.wait(timeout=60)
            results.put((task_id, name, _try_claim(sessions, policy, task_id, name, at)))
    finally:
        engine.dispose()


def _race_tasks(desk: Desk, count: int) -> list[int]:
    desk.reconfigure(centres=PULL_EVERYWHERE)
    return [desk.dx().id for _ in range(count)]


def _exactly_one_won(desk: Desk, outcomes: dict[int, dict[str, str | int]]) -> None:
    for task_id, by_reader in outcomes.items():
        assert sorted(by_reader.values(), key=str) == [409, "won"], (task_id, by_reader)
        winner = next(name for name, outcome in by_reader.items() if outcome == "won")
        task = desk.task(task_id)
        assert (task.state, desk.names[task.holder_id]) == ("claimed", winner)
        assert [(kind, actor) for kind, actor, _ in desk.timeline(task) if kind == "claimed"] == [("claimed", winner)]


def test_two_readers_claiming_the_same_task_at_the_same_instant_in_threads_exactly_one_wins(desk: Desk):
    task_ids = _race_tasks(desk, 10)
    barrier = threading.Barrier(2)
    outcomes: dict[int, dict[str, str | int]] = {task_id: {} for task_id in task_ids}

    def reader(name: str) -> None:
        for task_id in task_ids:
            barrier.wait(timeout=60)
            outcomes[task_id][name] = _try_claim(desk.sessions, desk.policy, task_id, name, desk.now)

    threads = [threading.Thread(target=reader, args=(name,)) for name in ("reader-ct", "reader-ct2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    _exactly_one_won(desk, outcomes)


def test_two_readers_claiming_the_same_task_at_the_same_instant_from_two_processes_exactly_one_wins(desk: Desk):
    task_ids = _race_tasks(desk, 10)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    processes = [
        spawn.Process(target=_claimer, args=(desk.config.database_url, desk.policy, name, task_ids, desk.now, barrier, results))
        for name in ("reader-ct", "reader-ct2")
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, dict[str, str | int]] = {task_id: {} for task_id in task_ids}
    for _ in range(2 * len(task_ids)):
        task_id, name, outcome = results.get(timeout=120)
        outcomes[task_id][name] = outcome
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    _exactly_one_won(desk, outcomes)


# -- the service-level clock ----------------------------------------------------------------------------------


def test_the_holder_is_reminded_then_the_task_escalated_then_the_breach_recorded_with_its_reason(desk: Desk):
    start = MONDAY_EVENING
    task = desk.dx(done=start)  # routine: 24 h; milestones at 12 h, 18 h, 21 h 36 min and 24 h
    assert desk.assignee(task) == "reader-ct"  # reader-ct2 has gone home

    assert desk.sweep(start + 11 * HOUR + 59 * MINUTE) == NOTHING
    assert desk.sweep(start + 12 * HOUR) == NOTHING | {"reminded": 1}
    assert desk.sweep(start + 12 * HOUR) == NOTHING  # a second sweep at the same moment does nothing
    assert desk.notices(task) == [("reader-ct", "reminder")]  # the assignee, nobody has claimed it
    assert desk.timeline(task)[-1] == ("reminded", "system", {"reminder": 1, "users": ["reader-ct"]})
    with desk.sessions() as session:
        assert "12 h 00 min left" in session.scalars(select(Notification.message)).one()

    desk.at[0] = start + 17 * HOUR + 50 * MINUTE
    desk.claim(task, "reader-ct")
    assert desk.sweep(start + 18 * HOUR) == NOTHING | {"reminded": 1}
    assert desk.timeline(task)[-1] == ("reminded", "system", {"reminder": 2, "users": ["reader-ct"]})  # the holder
    with pytest.raises(ClaimError) as not_offered:
        desk.claim(task, "reader-ct2")  # on duty now, but the task is reader-ct's until it is escalated
    assert not_offered.value.status == 403
    assert desk.sweep(start + 18 * HOUR + 10 * MINUTE) == NOTHING | {"expired": 1}

    desk.at[0] = start + 21 * HOUR + 30 * MINUTE
    desk.claim(task, "reader-ct")
    assert desk.sweep(start + 21 * HOUR + 36 * MINUTE) == NOTHING | {"escalated": 1}
    assert desk.timeline(task)[-1] == (
        "escalated", "system", {"offered": ["reader-ct2"], "supervisors": ["supervisor"]}
    )
    desk.at[0] = start + 21 * HOUR + 40 * MINUTE
    with pytest.raises(ClaimError) as held:
        desk.claim(task, "reader-ct2")  # offered now, but reader-ct still holds it
    assert held.value.status == 409

    assert desk.sweep(start + 23 * HOUR + 45 * MINUTE) == NOTHING | {"expired": 1}
    desk.claim(task, "reader-ct")
    assert desk.sweep(start + 24 * HOUR) == NOTHING | {"breached": 1}
    breached = desk.task(task.id)
    assert (breached.breached_at, breached.breach_reason) == (start + 24 * HOUR, "claimed by reader-ct but not signed in time")
    assert breached.next_check_at is None
    assert desk.timeline(task)[-1] == ("breached", "system", {"reason": "claimed by reader-ct but not signed in time"})
    assert desk.sweep(start + 30 * HOUR) == NOTHING | {"expired": 1}  # the lease ends; the breach is not repeated
    assert desk.notices(task) == [
        ("reader-ct", "reminder"), ("reader-ct", "reminder"),
        ("reader-ct2", "escalation"), ("supervisor", "escalation"),
        ("supervisor", "breach"),
    ]


def test_a_late_sweep_acts_once_for_the_milestones_it_jumped_and_leaves_signed_work_alone(desk: Desk):
    start = desk.now
    overdue = desk.study(CT, "DG_CT", mark="STAT", done=start - 28 * MINUTE)
    late = desk.study(CT, "DG_CT", mark="STAT", done=start)
    signed = desk.study(CT, "DG_CT", mark="STAT", done=start)
    desk.sign(signed, "reader-ct", start + 10 * MINUTE)
    desk.shift("reader-ct", start + 40 * MINUTE, start + 3 * HOUR, on_duty=False)
    unread = desk.study(CT, "DG_CT", mark="STAT", done=start + 45 * MINUTE)  # and nobody else reads CT

    # 25 min: past both reminders of ``late`` (one reminder, not two); ``overdue`` passed everything
    assert desk.sweep(start + 25 * MINUTE) == NOTHING | {"reminded": 1, "escalated": 1, "breached": 1}
    assert desk.sweep(start + 25 * MINUTE) == NOTHING
    assert [entry[:1] + (entry[2].get("reminder"),) for entry in desk.timeline(late)[2:]] == [("reminded", 2)]
    assert desk.kinds(overdue)[2:] == ["escalated", "breached"]  # no reminder once escalated
    assert desk.task(overdue.id).breach_reason == "assigned to reader-ct but not claimed in time"
    assert desk.task(overdue.id).reminders_sent == 2

    assert desk.sweep(start + 28 * MINUTE) == NOTHING | {"escalated": 1}  # no reminder after the escalation
    assert desk.sweep(start + 30 * MINUTE) == NOTHING | {"breached": 1}
    assert desk.kinds(late)[2:] == ["reminded", "escalated", "breached"]

    assert desk.timeline(unread)[-1] == ("offered", "system", {"users": [], "mode": "push"})
    assert desk.sweep(start + 76 * MINUTE) == NOTHING | {"escalated": 1, "breached": 1}
    assert desk.task(unread.id).breach_reason == "no qualified reader on duty"
    assert desk.notices(unread) == [("supervisor", "escalation"), ("supervisor", "breach")]

    assert desk.kinds(signed) == ["created", "assigned", "signed"]
    assert desk.notices(signed) == []
    assert desk.notices(late) == [
        ("reader-ct", "reminder"), ("reader-ct", "escalation"), ("supervisor", "escalation"), ("supervisor", "breach"),
    ]


def test_unclaimed_pull_work_reminds_every_eligible_reader_and_breaches_as_not_claimed(desk: Desk):
    desk.reconfigure(centres=PULL_EVERYWHERE)
    start = desk.now
    task = desk.dx(mark="STAT")
    assert desk.sweep(start + 15 * MINUTE) == NOTHING | {"reminded": 1}
    assert desk.notices(task) == [("reader-ct", "reminder"), ("reader-ct2", "reminder")]
    assert desk.sweep(start + 27 * MINUTE) == NOTHING | {"escalated": 1}
    assert desk.sweep(start + 30 * MINUTE) == NOTHING | {"breached": 1}
    assert desk.task(task.id).breach_reason == "not claimed by any reader in time"


# -- webhooks -------------------------------------------------------------------------------------------------


class Gateway:
    """A tiny SMS/WeChat gateway on a free local port, answering POSTs from a script (then 200)."""

    def __init__(self) -> None:
        self.script: list[int | str] = []
        self.received: list[dict] = []
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                gateway.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = gateway.script.pop(0) if gateway.script else 200
                if answer == "garbage":  # not HTTP at all
                    self.wfile.write(b"garbage\r\n")
                    self.close_connection = True
                    return
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    yield server
    server.close()


def _deliveries(desk: Desk) -> list[WebhookDelivery]:
    with desk.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_webhook_notices_are_retried_after_the_configured_pauses_until_the_gateway_takes_them(desk: Desk, gateway: Gateway):
    desk.reconfigure(webhook_url=gateway.url)
    start = desk.now
    task = desk.study(CT, "DG_CT", mark="STAT")
    gateway.script = [500, "garbage"]
    first_try = start + 15 * MINUTE
    assert desk.sweep(first_try) == NOTHING | {"reminded": 1}  # the sweep does its work whatever the gateway says
    assert desk.notices(task) == [("reader-ct", "reminder")]
    [delivery] = _deliveries(desk)
    assert (delivery.attempts, delivery.delivered_at, delivery.next_attempt_at) == (1, None, first_try + MINUTE)
    assert "500" in delivery.last_error

    assert desk.sweep(first_try + timedelta(seconds=59)) == NOTHING  # not before the pause
    assert len(gateway.received) == 1
    assert desk.sweep(first_try + MINUTE) == NOTHING
    [delivery] = _deliveries(desk)
    assert (delivery.attempts, delivery.next_attempt_at) == (2, first_try + 6 * MINUTE)
    assert "garbage" in delivery.last_error

    assert desk.sweep(first_try + 6 * MINUTE) == NOTHING | {"webhooks_posted": 1}
    [delivery] = _deliveries(desk)
    assert (delivery.attempts, delivery.delivered_at, delivery.next_attempt_at, delivery.last_error) == (
        3, first_try + 6 * MINUTE, None, None
    )
    assert len(gateway.received) == 3
    assert gateway.received[-1] | {"message": ""} == {
        "kind": "reminder", "message": "", "task_id": task.id, "study_uid": task.study_uid, "priority": "STAT",
        "due_at": task.due_at.isoformat(), "recipients": ["reader-ct"],
    }
    assert desk.sweep(first_try + 7 * MINUTE) == NOTHING  # delivered once, never again


def test_a_webhook_to_a_closed_port_records_the_error_and_gives_up_after_the_last_pause(desk: Desk):
    desk.reconfigure(webhook_url=f"http://127.0.0.1:{free_port()}/notify")
    start = desk.now
    task = desk.study(CT, "DG_CT", mark="STAT")
    when = start + 15 * MINUTE
    assert desk.sweep(when) == NOTHING | {"reminded": 1}
    assert desk.notices(task) == [("reader-ct", "reminder")]
    for attempt, pause in enumerate((1, 5, 15, 60, 240), start=1):
        [delivery] = _deliveries(desk)
        assert (delivery.attempts, delivery.next_attempt_at) == (attempt, when + pause * MINUTE)
        assert "refused" in delivery.last_error.lower()
        assert deliver_webhooks(desk.sessions, delivery.next_attempt_at - timedelta(seconds=1)) == 0
        assert _deliveries(desk)[0].attempts == attempt
        when = delivery.next_attempt_at
        assert deliver_webhooks(desk.sessions, when) == 0
    [delivery] = _deliveries(desk)
    assert (delivery.attempts, delivery.next_attempt_at, delivery.delivered_at) == (6, None, None)  # given up
    assert "refused" in delivery.last_error.lower()


# -- events end to end ----------------------------------------------------------------------------------------


def _work(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert queue.failed_job_registry.count == 0


def _resend_all(desk: Desk) -> None:
    """As if the relay had crashed after handing the events over, before recording it: they go again."""
    with desk.sessions() as session, session.begin():
        session.execute(update(OutboxEvent).values(sent_at=None))


def _completion_to_task(desk: Desk, queue: Queue, outage: RedisServer | None) -> None:
    first = desk.send(CT, "DG_CT")
    desk.complete()
    assert events.relay(desk.sessions, queue) == 1
    _work(queue)
    task = desk.task_of(first)
    assert desk.kinds(task) == ["created", "assigned"]
    _resend_all(desk)
    assert events.relay(desk.sessions, queue) == 1
    _work(queue)
    assert desk.task_of(first).id == task.id and desk.kinds(task) == ["created", "assigned"]

    if outage is not None:
        outage.stop()
    second = desk.send(ECG, "LIJIA_ECG", done=desk.now + HOUR)
    desk.complete()
    if outage is not None:
        assert events.relay(desk.sessions, queue) == 0  # Redis is down: the event waits in the outbox
        outage.start()
    assert events.relay(desk.sessions, queue) == 1
    assert events.relay(desk.sessions, queue) == 0
    _work(queue)
    assert desk.kinds(desk.task_of(second)) == ["created", "assigned"]

    for late in range(2):  # two late instances, each announced as a study.updated event, each delivered twice
        desk.send(CT, "DG_CT", StudyInstanceUID=first, done=desk.now + HOUR)
        desk.complete()
        assert events.relay(desk.sessions, queue) == 1
        _work(queue)
        _resend_all(desk)
        events.relay(desk.sessions, queue)
        _work(queue)
        notes = [detail for kind, _, detail in desk.timeline(task) if kind == "study_updated"]
        assert notes == [{"num_instances": 2 + n} for n in range(late + 1)]
    with desk.sessions() as session:
        assert session.scalars(select(ReadingTask.study_uid).order_by(ReadingTask.id)).all() == [first, second]


def test_a_completed_study_becomes_one_task_through_the_outbox_and_the_worker(desk: Desk, redis_server: RedisServer):
    queue = broker.event_queue(broker.connect(redis_server.url))
    _completion_to_task(desk, queue, redis_server)


def test_a_completed_study_becomes_one_task_through_the_redis_server_on_localhost(desk: Desk, redis_localhost):
    _completion_to_task(desk, broker.event_queue(redis_localhost), None)


# -- turnaround -----------------------------------------------------------------------------------------------


def test_turnaround_figures_and_backlog_from_a_known_history(desk: Desk):
    base = TUESDAY
    history = [  # (source, ae, signer, minutes from completion to signature)
        *[(CT, "DG_CT", "reader-ct", minutes) for minutes in (60, 120, 180, 240, 300)],  # routine: 24 h
        *[(ECG, "LIJIA_ECG", "reader-ecg", minutes) for minutes in (30, 90, 150)],  # urgent by rule: 2 h
        (ECG, "XH_ECG", "senior-ecg", 1500),  # routine, late
    ]
    made = [(desk.study(source, ae, done=base), signer, minutes) for source, ae, signer, minutes in history]
    for task, signer, minutes in made:
        desk.sign(task, signer, base + minutes * MINUTE)

    now = base + 30 * HOUR
    desk.study(ECG, "LIJIA_ECG", done=now - 3 * HOUR)  # urgent, due an hour ago
    desk.study(CT, "DG_CT", mark="STAT", done=now)  # two due in 30 min
    desk.study(CT, "DG_CT", mark="STAT", done=now)
    desk.study(CT, "DG_CT", StudyPriorityID="HIGH", done=now - HOUR)  # due in exactly 1 h
    desk.dx(done=now - 12 * HOUR)  # due in 12 h
    desk.study(CT, "DG_CT", done=now)  # due in exactly 24 h

    def numbers(**filters: Any) -> dict:
        with desk.sessions() as session:
            supervisor = session.get(User, desk.ids["supervisor"])
            return figures(session, Filters(**filters), visible_tasks(session, supervisor), now)

    everything = numbers()
    # all: 30 60 90 120 150 180 240 300 1500 → median 150; p90 at 7.2 → 300 + 0.2 × 1200
    assert everything["signed"] == {"count": 9, "median_minutes": 150, "p90_minutes": 540, "within_deadline_share": 0.7778}
    assert everything["backlog"] == {"overdue": 1, "under_1h": 2, "under_4h": 1, "under_24h": 1, "later": 1}

    assert numbers(site="TS-DONGGUAN")["signed"] == {  # 60 … 300: p90 at 3.6 → 240 + 0.6 × 60
        "count": 5, "median_minutes": 180, "p90_minutes": 276, "within_deadline_share": 1.0
    }
    assert numbers(site="TS-DONGGUAN")["backlog"] == {"overdue": 0, "under_1h": 2, "under_4h": 1, "under_24h": 0, "later": 1}
    assert numbers(modality="ECG")["signed"] == {  # 30 90 150 1500: p90 at 2.7 → 150 + 0.7 × 1350
        "count": 4, "median_minutes": 120, "p90_minutes": 1095, "within_deadline_share": 0.5
    }
    assert numbers(modality="ECG")["backlog"] == {"overdue": 1, "under_1h": 0, "under_4h": 0, "under_24h": 0, "later": 0}
    assert numbers(priority="URGENT")["signed"] == {  # 30 90 150: p90 at 1.8 → 90 + 0.8 × 60
        "count": 3, "median_minutes": 90, "p90_minutes": 138, "within_deadline_share": 0.6667
    }
    assert numbers(reader="reader-ecg")["signed"] == numbers(priority="URGENT")["signed"]
    assert numbers(reader="senior-ecg")["signed"] == {
        "count": 1, "median_minutes": 1500, "p90_minutes": 1500, "within_deadline_share": 0.0
    }
    # signed from 100 min to 300 min after the completions: 120 150 180 240 (150 was late)
    period = numbers(since=base + 100 * MINUTE, until=base + 300 * MINUTE)
    assert period["signed"] == {"count": 4, "median_minutes": 165, "p90_minutes": 222, "within_deadline_share": 0.75}
    assert period["filters"]["since"] == (base + 100 * MINUTE).isoformat()
    assert numbers(site="VIL-ZHAOZHUANG")["signed"] == {
        "count": 0, "median_minutes": None, "p90_minutes": None, "within_deadline_share": None
    }


# -- fixes found on review -----------------------------------------------------------------------------------


def test_a_night_shift_across_midnight_counts_on_both_sides_of_it(desk: Desk):
    desk.reconfigure(duty=(*desk.policy.duty[:1], DutyConfig(user="reader-ct2", days=("tue",), start="20:00", end="08:00")))
    tuesday_2100 = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai
    desk.shift("reader-ct", tuesday_2100 - HOUR, tuesday_2100 + 12 * HOUR, on_duty=False)
    assert desk.assignee(desk.dx(done=tuesday_2100)) == "reader-ct2"
    assert desk.assignee(desk.dx(done=tuesday_2100 + 9 * HOUR)) == "reader-ct2"  # 06:00 Wednesday, same shift
    assert desk.assignee(desk.dx(done=tuesday_2100 + 11 * HOUR)) is None  # 08:00: the shift is over


def test_a_provincial_study_is_read_by_the_province_consultant(desk: Desk):
    task = desk.study(CT, "PROV_PACS")
    assert desk.sites[task.centre_site_id] == "PROV" and task.kind == "read"
    assert desk.timeline(task)[1] == ("offered", "system", {"users": ["consultant"], "mode": "pull"})
    assert desk.holder(desk.claim(task, "consultant")) == "consultant"


def test_reminders_reach_the_supervisor_when_no_reader_can_take_the_task(desk: Desk):
    evening = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    desk.shift("reader-ct", evening - HOUR, evening + 30 * HOUR, on_duty=False)
    task = desk.study(CT, "DG_CT", done=evening)
    desk.sweep(evening + 13 * HOUR)  # past half of the 24 hours
    assert desk.notices(task) == [("supervisor", "reminder")]


def test_a_failing_event_handler_is_retried_by_the_worker(desk: Desk, redis_server: RedisServer):
    calls: list[int] = []

    def flaky(event_id: int, topic: str, payload: dict) -> None:
        calls.append(event_id)
        if len(calls) == 1:
            raise RuntimeError("the database went away for a moment")

    events.subscribe("test.flaky")(flaky)
    try:
        with desk.sessions() as session, session.begin():
            events.publish(session, "test.flaky", "k")
        queue = broker.event_queue(broker.connect(redis_server.url))
        events.relay(desk.sessions, queue)
        worker = SimpleWorker([queue], connection=queue.connection)
        worker.work(burst=True)
        job = queue.fetch_job(f"event-{calls[0]}")
        assert job.get_status() == "scheduled" and job.retries_left == events.HANDLER_RETRY.max - 1
        queue.enqueue_job(job)  # what rq's scheduler does when the pause is over
        worker.work(burst=True)
        assert calls == [calls[0], calls[0]] and queue.fetch_job(f"event-{calls[0]}").get_status() == "finished"
    finally:
        events._handlers.pop("test.flaky")  # noqa: SLF001
