"""The archive's DICOMweb resources as the caller may see them (PS3.18 10: study, series, instance).

Every DICOMweb request runs as its authenticated caller (:func:`telerad.auth.user_in`) and sees only the
studies the injected ``visible_studies`` filter lets through; a study the caller may not see answers 404,
exactly like one that does not exist, so nothing is learnt about other sites' studies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app, request
from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.orm import Session

from pacs_node.archive import Archive
from pacs_node.index import Instance, Series, Study
from telerad.auth import user_in
from telerad.problems import Problem
from telerad.users import User

StudyFilter = Callable[[Session, User], ColumnElement[bool]]
#: ``render(path, frame_index, *, window, size, fmt, quality) -> bytes``; frame_index counts from 0.
Renderer = Callable[..., bytes]

EXTENSION = "pacs_node.dicomweb"
PREFIX = "/dicomweb"


@dataclass(frozen=True)
class Backend:
    """What the web application injects: the archive, who sees which study, and the image renderer."""

    archive: Archive
    visible_studies: StudyFilter
    render: Renderer | None


def backend() -> Backend:
    """The current application's DICOMweb backend."""
    return current_app.extensions[EXTENSION]


@contextmanager
def transaction() -> Iterator[tuple[Session, User]]:
    """One transaction as the authenticated caller; 401 problem details when nobody is signed in."""
    with backend().archive.sessions() as session, session.begin():
        user = user_in(session)
        if user is None:
            raise Problem(401, "sign in, or send a valid API token as 'Authorization: Bearer <token>'")
        yield session, user


def visible(session: Session, user: User) -> ColumnElement[bool]:
    """The filter on :class:`Study` for what ``user`` may see."""
    return backend().visible_studies(session, user)


def base_url() -> str:
    """The absolute URL of the DICOMweb service root (``.../dicomweb``)."""
    return request.url_root.rstrip("/") + PREFIX


def retrieve_url(base: str, study: str, series: str | None = None, instance: str | None = None) -> str:
    """The WADO-RS URL of a study, series or instance (PS3.18 10.4.1)."""
    url = f"{base}/studies/{study}"
    if series is not None:
        url += f"/series/{series}"
    if instance is not None:
        url += f"/instances/{instance}"
    return url


def stored_instances(
    session: Session, user: User, study: str, series: str | None = None, instance: str | None = None
) -> list[Row[Any]]:
    """The visible instances of a study, series or instance, in series and instance order; 404 if none."""
    statement = (
        select(
            Study.study_uid, Series.series_uid, Instance.sop_instance_uid, Instance.sop_class_uid,
            Instance.transfer_syntax, Instance.storage_key, Instance.size,
        )
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Study.study_uid == study, visible(session, user))
        .order_by(
            Series.series_number.asc().nulls_last(), Series.id,
            Instance.instance_number.asc().nulls_last(), Instance.id,
        )
    )
    if series is not None:
        statement = statement.where(Series.series_uid == series)
    if instance is not None:
        statement = statement.where(Instance.sop_instance_uid == instance)
    rows = list(session.execute(statement).all())
    if not rows:
        raise Problem(404, f"no {_resource_name(study, series, instance)} you may see")
    return rows


def _resource_name(study: str, series: str | None, instance: str | None) -> str:
    if instance is not None:
        return f"instance {instance} in series {series} of study {study}"
    if series is not None:
        return f"series {series} in study {study}"
    return f"study {study}"


def path_of(row: Row[Any]) -> Path:
    """The stored file of an instance row."""
    return backend().archive.storage.path(row.storage_key)


def check_parameters(allowed: set[str]) -> None:
    """400 problem details naming the first query parameter the resource does not take."""
    for name in request.args:
        if name not in allowed:
            taken = ", ".join(sorted(allowed)) or "none"
            raise Problem(400, f"{name}: not a parameter of this resource (it takes: {taken})", parameter=name)
