"""(being written)"""

from __future__ import annotations

from flask import Blueprint

worklist = Blueprint("worklist", __name__)


@worklist.get("/worklist")
def page() -> str:
    """Placeholder until the page is written."""
    return "worklist"
