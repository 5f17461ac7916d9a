"""HTTP errors as RFC 9457 problem details (``application/problem+json``), for every JSON interface."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


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


def http_problem(exc: HTTPException) -> Response:
    """An HTTP error (404, 405, 413 ...) as problem details."""
    return problem_response(exc.code or 500, exc.description or HTTPStatus(exc.code or 500).phrase)


def _raised(exc: Problem) -> Response:
    return problem_response(exc.status, exc.detail, **exc.extra)


def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return problem_response(500, "an unexpected error occurred; it was logged")


def answer_with_problems(blueprint: Blueprint, unexpected: bool = True) -> None:
    """Answer every error of ``blueprint`` as problem details: a :class:`Problem` as raised, an HTTP error with
    its status and, when ``unexpected``, anything else as a logged 500."""
    blueprint.register_error_handler(Problem, _raised)
    blueprint.register_error_handler(HTTPException, http_problem)
    if unexpected:
        blueprint.register_error_handler(Exception, _unexpected)
