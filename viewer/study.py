"""(being written)"""

from __future__ import annotations

from flask import Blueprint

study = Blueprint("study", __name__)


@study.get("/study")
def page() -> str:
    """Placeholder until the page is written."""
    return "study"
