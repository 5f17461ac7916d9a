"""HTTP errors as RFC 9457 problem details (``application/problem+json``), for every JSON interface."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, current_app


class Problem(Exception):
    """An error answered as RFC 9457 problem details; ``extra`` becomes extension members."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def problem_response(status: int, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem details response."""
    response = current_app.json.response(
        {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}
    )
    response.status_code = status
    response.mimetype = "application/problem+json"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="telerad"'
    return response
