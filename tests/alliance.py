"""The demo alliance behind the web app, for the tests of every web page and API: stations send real
files through the archive, the reading queue makes tasks, people call the app, time is injected.

Registered as a plugin in ``conftest.py``, so the ``alliance`` fixture is there for every test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dicom_files import copy_with_new_uids
from flask.testing import FlaskClient
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from pacs_node.archive import Archive
from pacs_node.index import complete_stable_studies
from pacs_node.node import load_senders, storage_for
from reading_queue import jobs
from reading_queue.tasks import ReadingTask
from telerad import clock
from telerad.config import Config
from telerad.events import OutboxEvent
from telerad.users import create_token
from telerad.web import create_app

START = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # Wednesday 11:00 in Shanghai: every reader is on duty
CT = Path(get_testdata_file("CT_small.dcm"))
ECG = Path(get_testdata_file("waveform_ecg.dcm"))
PROBLEM = "application/problem+json"


class Alliance:
    """The demo alliance behind the web app: stations send studies, people call the API, time is injected."""

    def __init__(self, config: Config, sessions: sessionmaker, folder: Path) -> None:
        self.config, self.sessions, self.folder = config, sessions, folder
        self.now = START
        clock.set_source(lambda: self.now)
        jobs.configure(config, sessions)
        self.archive = Archive(storage_for(config), sessions)
        self.senders = load_senders(sessions)
        self.client: FlaskClient = create_app(config).test_client()
        self.tokens: dict[str, str] = {}

    def advance(self, **delta: float) -> datetime:
        """Move the clock on."""
        self.now += timedelta(**delta)
        return self.now

    def receive(self, source: Path, ae_title: str, **changes: object) -> str:
        """A station sends one real instance (with fresh UIDs); returns the study UID."""
        path = copy_with_new_uids(source, self.folder, **changes)
        self.archive.receive(path.read_bytes(), self.senders[ae_title])
        return dcmread(path, stop_before_pixels=True).StudyInstanceUID

    def complete(self, study_uid: str) -> ReadingTask:
        """Let the study become complete and the reading queue make its task (as the worker would)."""
        self.advance(seconds=self.config.dicom.stable_seconds + 1)
        with self.sessions() as session, session.begin():
            complete_stable_studies(session, self.config.dicom.stable_seconds)
        with self.sessions() as session:
            event = session.scalar(
                select(OutboxEvent).where(OutboxEvent.key == study_uid, OutboxEvent.topic == "study.complete")
            )
        jobs.on_study_complete(event.id, event.topic, event.payload)
        return self.task(study_uid)

    def study(self, source: Path, ae_title: str, **changes: object) -> ReadingTask:
        """A complete study with its reading task."""
        return self.complete(self.receive(source, ae_title, **changes))

    def task(self, study_uid: str) -> ReadingTask:
        """The study's reading task as it is now."""
        with self.sessions() as session:
            return session.scalar(select(ReadingTask).where(ReadingTask.study_uid == study_uid, ReadingTask.kind == "read"))

    def token(self, name: str) -> str:
        if name not in self.tokens:
            with self.sessions() as session, session.begin():
                self.tokens[name] = create_token(session, name)
        return self.tokens[name]

    def get(self, path: str, who: str, **query: Any) -> TestResponse:
        return self.client.get(f"/api/v1{path}", query_string=query, headers=self._auth(who))

    def post(self, path: str, who: str, body: Any = None) -> TestResponse:
        return self.client.post(f"/api/v1{path}", json=body, headers=self._auth(who))

    def worklist(self, who: str, **query: Any) -> list[dict[str, Any]]:
        response = self.get("/worklist", who, **query)
        assert response.status_code == 200, response.json
        return response.json["items"]

    def _auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who)}"}


@pytest.fixture
def alliance(config: Config, sessions: sessionmaker, tmp_path: Path) -> Iterator[Alliance]:
    yield Alliance(config, sessions, tmp_path / "files")
    clock.set_source(None)


def assert_problem(response: TestResponse, status: int, parameter: str | None = None) -> dict[str, Any]:
    """The response is RFC 9457 problem details with ``status`` (naming ``parameter`` for a 400)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status and body["type"] == "about:blank" and body["title"] and body["detail"]
    if parameter is not None:
        assert body["parameter"] == parameter and parameter in body["detail"]
    return body
