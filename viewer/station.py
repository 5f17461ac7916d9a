"""(being written)"""

from __future__ import annotations

from flask import Blueprint

station = Blueprint("station", __name__)


@station.get("/station")
def page() -> str:
    """Placeholder until the page is written."""
    return "station"
