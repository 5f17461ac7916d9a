"""A reading history made at known minutes through the service's own calls, for the turnaround and dashboard
tests: claims and consults through the API, openings through the viewer, signatures as the reports package
signs, deliveries as the delivery job records them.

Registered as a plugin in ``conftest.py``: the ``pull`` fixture (the demo alliance with the county in pull mode)
is there for every test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alliance import Alliance
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask, record
from telerad import clock
from telerad.config import CentreConfig, Config
from telerad.users import User

MINUTE = timedelta(minutes=1)


@pytest.fixture
def pull(config: Config, sessions: sessionmaker, tmp_path: Path) -> Iterator[Alliance]:
    """The demo alliance with the county in pull mode: readers claim, so each task's assignment has its own time."""
    centres = (CentreConfig(site="CNTY", mode="pull"), CentreConfig(site="PROV", mode="pull"))
    pulled = config.model_copy(update={"reading": config.reading.model_copy(update={"centres": centres})})
    yield Alliance(pulled, sessions, tmp_path / "files")
    clock.set_source(None)


class History:
    """Acts on one task at given minutes after its study's completion, through the same calls as the service."""

    def __init__(self, alliance: Alliance, task: ReadingTask) -> None:
        self.alliance, self.task = alliance, task

    def at(self, minutes: float) -> None:
        self.alliance.now = self.task.opened_at + minutes * MINUTE

    def claim(self, minutes: float, who: str) -> None:
        self.at(minutes)
        response = self.alliance.post(f"/tasks/{self.task.id}/claim", who)
        assert response.status_code == 200, response.json

    def open(self, minutes: float, who: str) -> None:
        self.at(minutes)
        headers = {"Authorization": f"Bearer {self.alliance.token(who)}"}
        assert self.alliance.client.get(f"/viewer/studies/{self.task.study_uid}", headers=headers).status_code == 200

    def sign(self, minutes: float, who: str) -> None:
        self.at(minutes)
        with self.alliance.sessions() as session, session.begin():
            signer = session.scalar(select(User).where(User.name == who))
            mark_signed(session, session.get(ReadingTask, self.task.id), signer, self.alliance.now)

    def event(self, minutes: float, kind: str) -> None:
        """An event the reports package records (a delivery, an addendum), at that time."""
        self.at(minutes)
        with self.alliance.sessions() as session, session.begin():
            record(session, session.get(ReadingTask, self.task.id), kind, "delivery")


def made(
    alliance: Alliance, source: Path, ae: str, station: str | None = None, mark: str | None = None, **changes: str
) -> History:
    """An hour later, a station sends a study (marked urgent by ``station`` when ``mark`` is given) that completes."""
    alliance.advance(hours=1)
    uid = alliance.receive(source, ae, **changes)
    if mark:
        assert alliance.post(f"/studies/{uid}/urgency", station, {"priority": mark}).status_code == 200
    return History(alliance, alliance.complete(uid))
