"""The rq worker: runs event handlers and scheduled jobs."""

from __future__ import annotations

from rq import Worker

from telerad import broker


def run_worker(redis_url: str, burst: bool = False) -> bool:
    """Work the event queue (with rq's scheduler) until stopped, or until empty with ``burst``."""
    connection = broker.connect(redis_url)
    worker = Worker([broker.event_queue(connection)], connection=connection)
    return worker.work(with_scheduler=True, burst=burst)
