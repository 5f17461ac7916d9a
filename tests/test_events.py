"""Study completion is announced once through the outbox and the job queue, surviving a Redis outage."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from rq import SimpleWorker
from sqlalchemy import select

from conftest import START, RedisServer
from dicom_files import copy_with_new_uids, send
from pacs_node.index import complete_stable_studies
from pacs_node.node import Receiver, housekeep
from telerad import broker, events
from telerad.config import Config
from telerad.events import OutboxEvent


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, dict]]:
    """Records every study event a worker handles (in place of the reading queue's handlers)."""
    calls: list[tuple[int, str, dict]] = []

    def record(event_id: int, topic: str, payload: dict) -> None:
        calls.append((event_id, topic, payload))

    for topic in ("study.complete", "study.updated"):
        monkeypatch.setitem(events._handlers, topic, [record])  # noqa: SLF001
    return calls


def _store_study(config: Config, data: Path, folder: Path) -> str:
    path = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", folder)
    assert send(config.dicom.port, "DG_CT", path)[0].Status == 0
    return str(path.stem)


def _outbox(sessions) -> list[tuple[str, str, bool]]:
    with sessions() as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        return [(row.topic, row.key, row.sent_at is not None) for row in rows]


def test_study_is_complete_once_after_stable_seconds_and_late_instances_are_updates(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path, at: list[datetime]
):
    path = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path)
    assert send(config.dicom.port, "DG_CT", path)[0].Status == 0
    study_uid = dcmread(path).StudyInstanceUID
    at[0] = START + timedelta(seconds=59)
    with sessions() as session, session.begin():
        assert complete_stable_studies(session, 60) == []
    at[0] = START + timedelta(seconds=61)
    for expected in ([study_uid], []):
        with sessions() as session, session.begin():
            assert complete_stable_studies(session, 60) == expected
    late = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path, StudyInstanceUID=study_uid)
    assert send(config.dicom.port, "DG_CT", late)[0].Status == 0
    at[0] = START + timedelta(seconds=200)
    with sessions() as session, session.begin():
        assert complete_stable_studies(session, 60) == [study_uid]
    assert _outbox(sessions) == [("study.complete", study_uid, False), ("study.updated", study_uid, False)]


def test_events_reach_the_worker_once_across_a_redis_outage(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path, at: list[datetime],
    redis_server: RedisServer, handled: list,
):
    first = _store_study(config, data, tmp_path / "a")
    queue = broker.event_queue(broker.connect(redis_server.url))
    at[0] = START + timedelta(seconds=61)
    housekeep(config, sessions, queue)
    assert [sent for *_, sent in _outbox(sessions)] == [True]

    redis_server.stop()
    at[0] = START + timedelta(seconds=100)
    second = _store_study(config, data, tmp_path / "b")  # C-STORE does not depend on Redis
    at[0] = START + timedelta(seconds=200)
    housekeep(config, sessions, queue)  # Redis is down: the event waits in the outbox
    assert [sent for *_, sent in _outbox(sessions)] == [True, False]

    redis_server.start()
    housekeep(config, sessions, queue)
    housekeep(config, sessions, queue)  # nothing is sent twice
    assert [sent for *_, sent in _outbox(sessions)] == [True, True]
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert sorted(payload["num_instances"] for _, _, payload in handled) == [1, 1]
    assert len({event_id for event_id, _, _ in handled}) == 2
    assert {topic for _, topic, _ in handled} == {"study.complete"}
    assert first != second


def test_relay_to_the_redis_server_on_localhost(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path, at, handled, redis_localhost
):
    connection = redis_localhost
    queue = broker.event_queue(connection)
    _store_study(config, data, tmp_path)
    at[0] = START + timedelta(seconds=61)
    housekeep(config, sessions, queue)
    assert queue.count == 1
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert [topic for _, topic, _ in handled] == ["study.complete"]
