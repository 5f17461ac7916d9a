"""``telerad serve``: every part of Telerad on one machine, as separate processes.

The same processes a larger installation runs on several machines — the DICOM
node, the web application, a worker with the scheduler — started and watched
here, with the embedded Redis server when no Redis URL is configured.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from pacs_node.samples import load_samples
from telerad.broker import EmbeddedRedis
from telerad.config import Config
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare

log = logging.getLogger(__name__)
PARTS = ("dicom", "worker", "web")


def serve_all(config: Config, config_path: Path, stop: threading.Event) -> None:
    """Prepare the installation, start every part and watch them until ``stop`` is set."""
    engine = make_engine(config.database_url)
    sessions = make_session_factory(engine)
    created = prepare(config, sessions)
    samples = load_samples(config, sessions) if config.service.load_samples else 0
    engine.dispose()
    embedded = None
    redis_url = config.redis.url
    if not redis_url:
        embedded = EmbeddedRedis(config.data_dir)
        redis_url = embedded.start()
    environment = {**os.environ, "TELERAD_REDIS_URL": redis_url, "TELERAD_CONFIG": str(Path(config_path).resolve())}
    children = {part: _start(part, environment) for part in PARTS}
    click.echo(f"Telerad is running; data in {config.data_dir}")
    click.echo(f"  DICOM node  {config.dicom.ae_title}@{config.dicom.host}:{config.dicom.port}")
    click.echo(f"  web         http://{config.web.host}:{config.web.port}/")
    click.echo(f"  job queue   {'embedded Redis at ' if embedded else ''}{redis_url}")
    if created:
        click.echo(f"  demo users created (also in {config.data_dir / 'demo-passwords.txt'}):")
        for name, password in created.items():
            click.echo(f"    {name:<12} {password}")
    if samples:
        click.echo(f"  sample studies loaded: {samples} (CT, 12-lead ECG, chest X-ray from the demo stations)")
    click.echo("Press Ctrl+C to stop.")
    try:
        while not stop.wait(1.0):
            for part, child in children.items():
                if child.poll() is not None:
                    log.error("%s exited with %s; starting it again", part, child.returncode)
                    time.sleep(1.0)
                    children[part] = _start(part, environment)
    finally:
        for child in children.values():
            child.terminate()
        for child in children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()


def _start(part: str, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "telerad", part], env=environment)
