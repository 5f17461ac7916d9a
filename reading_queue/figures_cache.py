"""Turnaround figures kept for a minute in Redis, so a dashboard over a province's year answers at once.

The figures of a period are an aggregation over up to a hundred thousand tasks; they are computed once and
shared by every request with the same filters and the same view (the caller's visibility, compiled to SQL, is
part of the key) until they are ``fresh_seconds`` old by the service's clock. A period that ended before it was
computed never changes (milestones are stamped when they happen), so it is kept for a day. The worker's
periodic :func:`reading_queue.jobs.turnaround_warmup` computes each supervisor's default dashboard period ahead
of them. Redis failing never fails a request: the figures are then computed directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement

log = logging.getLogger(__name__)

PREFIX = "telerad:turnaround:"
KEEP_SECONDS = 86_400


def cache_key(visible: ColumnElement[bool], **parts: Any) -> str:
    """The key of the figures ``parts`` describe (filters, time zone, list sizes) for the view ``visible``."""
    view = str(visible.compile(compile_kwargs={"literal_binds": True}))
    text = json.dumps({"view": view, **parts}, sort_keys=True, default=str)
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


class FiguresCache:
    """Computed figures in Redis, fresh for ``fresh_seconds`` (or for good once their period is over)."""

    def __init__(self, redis: Redis, fresh_seconds: float = 60.0) -> None:
        self.redis, self.fresh = redis, timedelta(seconds=fresh_seconds)

    def through(self, key: str, at: datetime, closed: bool, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached figures of ``key`` if fresh at ``at``, else ``compute()`` (then kept)."""
        try:
            raw = self.redis.get(key)
        except RedisError as exc:
            log.warning("turnaround cache unavailable, computing directly: %s", exc)
            return compute()
        if raw is not None:
            kept = json.loads(raw)
            computed_at = datetime.fromisoformat(kept["computed_at"])
            if kept["closed"] or timedelta(0) <= at - computed_at < self.fresh:
                return kept["figures"]
        figures = compute()
        self.put(key, at, closed, figures)
        return figures

    def put(self, key: str, at: datetime, closed: bool, figures: dict[str, Any]) -> None:
        """Keep ``figures`` computed at ``at``."""
        kept = {"computed_at": at.isoformat(), "closed": closed, "figures": figures}
        try:
            self.redis.set(key, json.dumps(kept, separators=(",", ":")), ex=KEEP_SECONDS)
        except RedisError as exc:
            log.warning("turnaround cache unavailable, figures not kept: %s", exc)
