"""The service's clock: one place to read the time, so tests can drive it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, UTC

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests inject time); ``None`` restores the system clock."""
    global _source
    _source = source or (lambda: datetime.now(UTC))
