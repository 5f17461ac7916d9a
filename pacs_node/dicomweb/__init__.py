"""DICOMweb (PS3.18) under ``/dicomweb``: QIDO-RS, WADO-RS and STOW-RS."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from pacs_node.archive import Archive
from telerad.users import User

dicomweb = Blueprint("dicomweb", __name__, url_prefix="/dicomweb")

StudyFilter = Callable[[Session, User], ColumnElement[bool]]


def init_app(app: Flask, archive: Archive, visible_studies: StudyFilter, render: Callable[..., bytes] | None) -> None:
    """Serve DICOMweb from ``archive`` to callers who see the studies ``visible_studies`` lets through."""
    app.extensions["pacs_node.dicomweb"] = (archive, visible_studies, render)
    app.register_blueprint(dicomweb)
