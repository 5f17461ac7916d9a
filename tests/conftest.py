"""Shared fixtures: a configured installation on SQLite or PostgreSQL, a running node, real files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, UTC
from pathlib import Path

import pytest
from redis import Redis
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from pacs_node.node import Receiver, start_receiver
from telerad import broker, clock, users
from telerad.config import Config, load_config
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare

pytest_plugins = ["alliance", "browser", "history", "station_receiver", "web_client"]  # fixtures in those modules
ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TELERAD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_SERVER_URL = os.environ.get("TELERAD_TEST_REDIS", "redis://127.0.0.1:6379/15")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def require(reason: str) -> None:
    """Skip a test that lacks something — or fail it on CI, where everything must be present."""
    if ON_CI:
        pytest.fail(f"required on CI: {reason}")
    pytest.skip(reason)


def shared_data() -> Path:
    """The real DICOM files beside the checkout (``../shared/data`` or ``TELERAD_TEST_DATA``)."""
    path = Path(os.environ.get("TELERAD_TEST_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "MANIFEST.tsv").is_file():
        require(f"real test data not found at {path}")
    return path


def tool(name: str) -> str:
    """The path of a command-line tool (dcmtk, orthanc ...), or skip/fail if it is missing."""
    found = shutil.which(name)
    if found is None:
        require(f"{name} is not installed")
    return found  # type: ignore[return-value]


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def at() -> Iterator[list[datetime]]:
    """The injected clock, starting at ``START``: set ``at[0]`` to move time."""
    now = [START]
    clock.set_source(lambda: now[0])
    yield now
    clock.set_source(None)


class RedisServer:
    """A real Redis server process of our own (embedded binary or Debian's redis-server)."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder = kind, folder
        self.embedded = broker.EmbeddedRedis(folder) if kind == "embedded" else None
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return self.embedded.url if self.embedded else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.embedded:
            self.embedded.start()
            return
        binary = shutil.which("redis-server") or require("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in self.process.stdout:  # type: ignore[union-attr]
            if "Ready to accept connections" in line:
                return
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.embedded:
            self.embedded.stop()
        elif self.process:
            self.process.terminate()
            self.process.communicate(timeout=10)


@pytest.fixture(params=["embedded", "redis-server"])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of our own, stopped (and restartable) at will."""
    server = RedisServer(request.param, tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its cheapest: each fresh database's demo users are ready fast (the hash is the same kind)."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def data() -> Path:
    """The shared real-data folder."""
    return shared_data()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: an SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'telerad.db'}"
        return
    name = f"telerad_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable
        admin.dispose()
        require(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not available: {exc}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_config(tmp_path: Path, database_url: str, **overrides: str) -> Config:
    """The repository's ``config.yaml`` on a private data directory, database and port."""
    environ = {
        "TELERAD_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "TELERAD_DATABASE_URL": database_url,
        "TELERAD_REDIS_URL": "",
        "TELERAD_DICOM_HOST": "127.0.0.1",
        "TELERAD_DICOM_PORT": str(free_port()),
        "TELERAD_DICOM_STABLE_SECONDS": "60",
        "TELERAD_WEB_PORT": str(free_port()),
        **overrides,
    }
    return load_config(ROOT / "config.yaml", environ)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    """A configuration on a private data directory and a fresh database (both back ends)."""
    return make_config(tmp_path, database_url)


@pytest.fixture
def sessions(config: Config) -> Iterator[sessionmaker]:
    """Sessions on a migrated database holding the demo sites and users."""
    engine = make_engine(config.database_url)
    factory = make_session_factory(engine)
    prepare(config, factory)
    yield factory
    engine.dispose()


@pytest.fixture
def node(config: Config, sessions: sessionmaker) -> Iterator[Receiver]:
    """The DICOM node listening on ``config.dicom.port`` in this process."""
    receiver = start_receiver(config, sessions)
    yield receiver
    receiver.server.shutdown()


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Wait until ``ready()`` holds, checking between tries that ``process`` is still running."""
    deadline = time.monotonic() + timeout
    while not ready():
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen within {timeout:.0f} s")
            continue
        pytest.fail(f"the process exited with {process.returncode} before {what}")


def echo(port: int, calling_ae: str = "DG_CT") -> bool:
    """Whether the node on ``port`` answers C-ECHO (dcmtk's echoscu)."""
    return subprocess.run(
        [tool("echoscu"), "-aet", calling_ae, "-aec", "TELERAD", "127.0.0.1", str(port)], capture_output=True
    ).returncode == 0


@pytest.fixture
def redis_localhost() -> Iterator[Redis]:
    """The Redis server at 127.0.0.1:6379 (a database of its own, emptied before and after)."""
    connection = broker.connect(REDIS_SERVER_URL)
    try:
        connection.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable
        require(f"Redis at {REDIS_SERVER_URL} is not available: {exc}")
    connection.flushdb()
    yield connection
    connection.flushdb()
