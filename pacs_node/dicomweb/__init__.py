"""DICOMweb (PS3.18) under ``/dicomweb``: QIDO-RS, WADO-RS and STOW-RS, so that OHIF, Weasis or any client works.

- :mod:`~pacs_node.dicomweb.qido` — search for studies, series, instances (PS3.18 10.6)
- :mod:`~pacs_node.dicomweb.wado` — instances, metadata, bulk data, frames (10.4)
- :mod:`~pacs_node.dicomweb.rendered` — rendered images and thumbnails through the injected renderer (10.4)
- :mod:`~pacs_node.dicomweb.stow` — store instances, through the same archive as C-STORE (10.5)
- :mod:`~pacs_node.dicomweb.resources` — the caller, what they may see, resource URLs
- :mod:`~pacs_node.dicomweb.media`, :mod:`~pacs_node.dicomweb.multipart`, :mod:`~pacs_node.dicomweb.dicom_json`,
  :mod:`~pacs_node.dicomweb.frames` — content negotiation, multipart messages, the DICOM JSON model, pixel frames

A bearer token or the browser session authenticates (:mod:`telerad.auth`). What a caller sees is decided by
the injected ``visible_studies`` filter, so this package knows nothing of the reading queue. Errors are
RFC 9457 problem details (``application/problem+json``), unknown paths and methods under ``/dicomweb`` too.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from pacs_node.archive import Archive
from pacs_node.dicomweb.resources import EXTENSION, PREFIX, Backend, Renderer, StudyFilter
from telerad.problems import answer_with_problems, http_problem, problem_response

log = logging.getLogger(__name__)

dicomweb = Blueprint("dicomweb", __name__, url_prefix=PREFIX)
answer_with_problems(dicomweb, unexpected=False)


def init_app(app: Flask, archive: Archive, visible_studies: StudyFilter, render: Renderer | None) -> None:
    """Serve DICOMweb from ``archive`` to callers who see the studies ``visible_studies`` lets through.

    ``render(path, frame_index, *, window, size, fmt, quality) -> bytes`` draws rendered images and
    thumbnails; without it those answer 501.
    """
    app.extensions[EXTENSION] = Backend(archive, visible_studies, render)
    app.register_blueprint(dicomweb)
    # Unknown paths and methods are routed before any blueprint: answer them as problem details under
    # /dicomweb, and leave every other path to the handler registered before (e.g. the JSON API's).
    previous = app.error_handler_spec[None][None].get(HTTPException)

    def on_routing(exc: HTTPException) -> Response | HTTPException:
        if (request.path + "/").startswith(f"{PREFIX}/"):
            return http_problem(exc)
        return previous(exc) if previous is not None else exc

    app.register_error_handler(HTTPException, on_routing)


@dicomweb.errorhandler(SQLAlchemyError)
def _on_database(exc: SQLAlchemyError) -> Response:
    log.error("archive index unavailable in %s %s: %s", request.method, request.path, exc)
    response = problem_response(503, "the archive index is unavailable; retry later")
    response.headers["Retry-After"] = "30"
    return response


@dicomweb.errorhandler(Exception)
def _on_unexpected(exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return problem_response(500, "an unexpected error occurred; it was logged")


# The resources register their routes on the blueprint above.
from pacs_node.dicomweb import qido, rendered, stow, wado  # noqa: E402, F401
