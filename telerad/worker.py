"""The rq worker: event handlers and the periodic service-level sweep (rq's cron scheduler)."""

from __future__ import annotations

import multiprocessing

from rq import Worker
from rq.cron import CronScheduler

import reading_queue.jobs
import reports.delivery_jobs
import reports.jobs
import reports.quality_jobs
import viewer.jobs
from telerad import broker
from telerad.config import Config
from telerad.events import QUEUE_NAME

WARMUP_SECONDS = 60  # as long as the turnaround figures stay fresh in their cache


def _run_cron(redis_url: str, interval: int, delivery_interval: int) -> None:
    scheduler = CronScheduler(connection=broker.connect(redis_url), name=f"telerad-cron-{multiprocessing.current_process().pid}")
    scheduler.register(reading_queue.jobs.sla_sweep, QUEUE_NAME, interval=interval, job_timeout=300)
    scheduler.register(reading_queue.jobs.turnaround_warmup, QUEUE_NAME, interval=WARMUP_SECONDS, job_timeout=300)
    scheduler.register(reports.jobs.critical_sweep, QUEUE_NAME, interval=interval, job_timeout=300)
    scheduler.register(reports.delivery_jobs.retry_sweep, QUEUE_NAME, interval=delivery_interval, job_timeout=900)
    scheduler.start()


def run_worker(config: Config, burst: bool = False) -> bool:
    """Work the event queue with rq's scheduler and, unless ``burst``, the cron scheduler beside it."""
    reading_queue.jobs.configure(config)
    reports.jobs.configure(config)
    viewer.jobs.configure(config)
    viewer.jobs.subscribe()
    reports.delivery_jobs.configure(config)
    reports.delivery_jobs.subscribe()
    reports.quality_jobs.subscribe(config)
    connection = broker.connect(config.redis.url)
    cron = None
    if not burst:
        cron = multiprocessing.get_context("spawn").Process(
            target=_run_cron,
            args=(config.redis.url, max(1, int(config.reading.sweep_seconds)), max(1, int(config.delivery.sweep_seconds))),
            name="telerad-cron",
            daemon=True,
        )
        cron.start()
    try:
        return Worker([broker.event_queue(connection)], connection=connection).work(with_scheduler=True, burst=burst)
    finally:
        if cron is not None:
            cron.terminate()
