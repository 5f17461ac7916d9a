"""QIDO-RS (PS3.18 10.6): searching the studies, series and instances the caller may see.

``GET /studies``, ``/studies/{s}/series``, ``/series``, ``/studies/{s}/series/{se}/instances``,
``/studies/{s}/instances`` and ``/instances`` answer ``application/dicom+json`` (PS3.18 F.2), or 204 when
nothing matches. Matching (8.3.4) is the C-FIND matching of :mod:`pacs_node.query` on the index: single
value, wildcard (``*``, ``?``), list of UIDs (separated by ``\\`` or ``,``, or the parameter repeated), any of
several Modalities in Study (``CT,DX``), date and time ranges, Patient's Name ignoring case and on any
component group. A key of a level below the search (``/studies?Modality=CT``) matches the entities that
have such a child (relational query).

Attributes are named by keyword or tag. Each result holds the attributes of PS3.18 Table 10.6.3-3, -4 or
-5 for its level (and those of the levels above when the search is not within one study or series), the
matching keys, and the ``includefield`` attributes (``all``: every attribute the index holds). Attributes
the index does not hold are read from one stored file of each result (the instance's own, or the first
of the study or series). Results are paged in SQL (``limit``, ``offset``; at most :data:`MAX_RESULTS`).
Parameters DICOM knows but the index cannot match on, and ``fuzzymatching=true``, are ignored with a
``Warning: 299`` header; anything else unknown or malformed is a 400 naming the parameter.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Row, Select, and_, exists, func, select
from sqlalchemy.orm import Session

from pacs_node.archive import Refused
from pacs_node.dicomweb import dicomweb
from pacs_node.dicomweb.dicom_json import attribute, dataset, element, key, read_header
from pacs_node.dicomweb.media import DICOM_JSON, require_dicom_json
from pacs_node.dicomweb.resources import backend, base_url, retrieve_url, transaction, visible
from pacs_node.index import Instance, Patient, Series, Study
from pacs_node.query import KEYS, Key
from telerad.problems import Problem
from telerad.users import User

log = logging.getLogger(__name__)

MAX_RESULTS = 1000
LEVELS = ("STUDY", "SERIES", "IMAGE")
DEPTH = {"PATIENT": 0, "STUDY": 0, "SERIES": 1, "IMAGE": 2}
TABLES: dict[str, Any] = {"STUDY": Study, "SERIES": Series, "IMAGE": Instance}
UNIQUE = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
#: What the index answers: the C-FIND keys, and the stored transfer syntax of each instance.
ATTRIBUTES: dict[str, Key] = {**KEYS, "AvailableTransferSyntaxUID": Key("IMAGE", Instance.transfer_syntax, None)}
#: Attributes every result carries (PS3.18 Tables 10.6.3-3, -4 and -5), per level.
DEFAULTS = {
    "STUDY": (
        "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
        "ReferringPhysicianName", "RetrieveURL", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "Modality", "SeriesDescription", "RetrieveURL", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "RetrieveURL", "InstanceNumber", "Rows",
        "Columns", "BitsAllocated", "NumberOfFrames", "AvailableTransferSyntaxUID",
    ),
}
COMPUTED = ("InstanceAvailability", "RetrieveURL")
CONTROLS = ("limit", "offset", "fuzzymatching", "includefield", "accept")
_DATE = r"\d{8}"
_TIME = r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"
_FORMATS = {"DA": (_DATE, "a date YYYYMMDD"), "TM": (_TIME, "a time HHMMSS.FFFFFF")}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass
class Search:
    """A QIDO-RS request: the level searched, what is fixed by the path, the matching keys and what to return."""

    level: str
    within: dict[str, str]
    filters: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    limit: int = MAX_RESULTS
    offset: int = 0
    capped: bool = True
    warnings: list[str] = field(default_factory=list)


@dicomweb.get("/studies", defaults={"level": "STUDY"})
@dicomweb.get("/series", defaults={"level": "SERIES"})
@dicomweb.get("/instances", defaults={"level": "IMAGE"})
@dicomweb.get("/studies/<study>/series", defaults={"level": "SERIES"})
@dicomweb.get("/studies/<study>/instances", defaults={"level": "IMAGE"})
@dicomweb.get("/studies/<study>/series/<series>/instances", defaults={"level": "IMAGE"})
def search(level: str, study: str | None = None, series: str | None = None) -> Response:
    """Search for studies, series or instances (PS3.18 10.6.1)."""
    require_dicom_json("search results")
    within = {name: uid for name, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)) if uid}
    query = read_query(level, within)
    with transaction() as (session, user):
        rows = _matches(session, user, query)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        files = _files_of(session, query, rows)
    if more and query.capped:
        query.warnings.append(
            "The number of results exceeded the maximum supported by the server. "
            "Additional results can be requested."
        )
    base = base_url()
    results = [_result(query, row, files.get(row.pk), base) for row in rows]
    if results:
        response = Response(json.dumps(results, ensure_ascii=False), mimetype=DICOM_JSON)
    else:
        response = Response(status=204)
    for warning in query.warnings:
        response.headers.add("Warning", f'299 {request.host} "{warning}"')
    return response


# --- the query ---------------------------------------------------------------------------------------


def read_query(level: str, within: dict[str, str]) -> Search:
    """The query parameters of a search (PS3.18 8.3.4); 400 problem details naming a bad one."""
    query = Search(level, within)
    requested: list[str] = []
    unsupported: list[str] = []
    for name in request.args:
        values = request.args.getlist(name)
        if name in CONTROLS:
            _control(query, name, values, requested)
            continue
        keyword = _keyword(name)
        if keyword is None:
            raise _bad(name, "not a query parameter nor a DICOM attribute keyword or tag")
        if keyword not in ATTRIBUTES or ATTRIBUTES[keyword].match is None:
            unsupported.append(name)
            continue
        query.filters[keyword] = _value(name, keyword, values)
    if unsupported:
        query.warnings.append(f"The following query parameters are not supported: {', '.join(unsupported)}")
    matched = [keyword for keyword in query.filters if DEPTH[ATTRIBUTES[keyword].level] <= DEPTH[level]]
    query.fields = list(dict.fromkeys([*_defaults(level, within), *matched, *requested]))
    return query


def _bad(name: str, reason: str) -> Problem:
    return Problem(400, f"{name}: {reason}", parameter=name)


def _control(query: Search, name: str, values: list[str], requested: list[str]) -> None:
    if name == "includefield":
        for item in (part.strip() for value in values for part in value.split(",")):
            if item == "all":
                requested.extend(k for k, v in ATTRIBUTES.items() if DEPTH[v.level] <= DEPTH[query.level])
                continue
            keyword = _keyword(item)
            if keyword is None or "." in item:
                raise _bad(name, f"{item!r} is not a DICOM attribute keyword or tag (or 'all')")
            requested.append(keyword)
    elif name == "fuzzymatching":
        if values[-1] not in ("true", "false"):
            raise _bad(name, "expected true or false")
        if values[-1] == "true":
            query.warnings.append(
                "The fuzzymatching parameter is not supported. Only literal matching has been performed."
            )
    elif name in ("limit", "offset"):
        low = 1 if name == "limit" else 0
        if not values[-1].isdigit() or int(values[-1]) < low:
            raise _bad(name, f"expected a whole number from {low}")
        if name == "offset":
            query.offset = int(values[-1])
        else:
            query.limit, query.capped = min(int(values[-1]), MAX_RESULTS), int(values[-1]) > MAX_RESULTS
    # "accept" was read by content negotiation


def _keyword(name: str) -> str | None:
    """The keyword of an attribute named by keyword or tag (a sequence path ``A.B`` checked part by part)."""
    keywords = []
    for part in name.split("."):
        if re.fullmatch(r"[0-9A-Fa-f]{8}", part):
            keyword = keyword_for_tag(int(part, 16))
        else:
            keyword = part if tag_for_keyword(part) is not None else ""
        if not keyword:
            return None
        keywords.append(keyword)
    return ".".join(keywords)


def _value(name: str, keyword: str, values: list[str]) -> str:
    """A matching key's value, checked against its VR; UIDs may be listed with ``,``, ``\\`` or repetition."""
    vr = dictionary_VR(keyword)
    if vr == "UI":
        uids = [uid.strip() for value in values for uid in value.replace(",", "\\").split("\\") if uid.strip()]
        bad = [uid for uid in uids if len(uid) > 64 or not _UID.fullmatch(uid)]
        if bad:
            raise _bad(name, f"{bad[0][:70]!r} is not a UID")
        return "\\".join(uids)
    if len(values) > 1:
        raise _bad(name, "given more than once")
    value = values[0]
    if keyword == "ModalitiesInStudy":
        return value.replace(",", "\\")  # code strings hold no commas: a comma can only separate codes
    if vr in _FORMATS and value:
        pattern, what = _FORMATS[vr]
        if not re.fullmatch(f"{pattern}|({pattern})?-({pattern})?", value) or value == "-":
            raise _bad(name, f"expected {what}, or a range of them joined by '-'")
    return value


def _defaults(level: str, within: dict[str, str]) -> list[str]:
    """The attributes every result carries: those of its level, and of the levels above not fixed by the path."""
    fields: list[str] = []
    for above in LEVELS[: LEVELS.index(level)]:
        fields.append(UNIQUE[above])
        if UNIQUE[above] not in within:
            fields.extend(DEFAULTS[above])
    return [*fields, *DEFAULTS[level]]


# --- matching in the index ---------------------------------------------------------------------------


def _matches(session: Session, user: User, query: Search) -> list[Row[Any]]:
    """One page of matching entities (plus one row, to tell whether there are more), in one query."""
    level = query.level
    table = TABLES[level]
    indexed = [
        keyword for keyword in dict.fromkeys([*(UNIQUE[above] for above in LEVELS[: LEVELS.index(level) + 1]),
                                              *query.fields])
        if keyword in ATTRIBUTES and DEPTH[ATTRIBUTES[keyword].level] <= DEPTH[level]
    ]
    columns = [ATTRIBUTES[keyword].column.label(keyword) for keyword in indexed]
    statement = select(*columns, table.id.label("pk")).select_from(table)
    if level == "IMAGE":
        statement = statement.add_columns(Instance.storage_key.label("storage_key"))
        statement = statement.join(Series, Instance.series_pk == Series.id)
    if level != "STUDY":
        statement = statement.join(Study, Series.study_pk == Study.id)
    statement = statement.join(Patient, Study.patient_pk == Patient.id).where(visible(session, user))
    for keyword, uid in query.within.items():
        statement = statement.where(ATTRIBUTES[keyword].column == uid)
    statement = _matching(statement, query, session.get_bind().dialect.name == "sqlite")
    order = {
        "STUDY": (Study.study_date.desc(), Study.study_time.desc(), Study.id.desc()),
        "SERIES": (Study.id, Series.series_number.asc().nulls_last(), Series.id),
        "IMAGE": (Study.id, Series.series_number.asc().nulls_last(), Series.id,
                  Instance.instance_number.asc().nulls_last(), Instance.id),
    }[level]
    statement = statement.order_by(*order).limit(query.limit + 1).offset(query.offset)
    return list(session.execute(statement).all())


def _matching(statement: Select[Any], query: Search, glob: bool) -> Select[Any]:
    """``statement`` narrowed by the matching keys; keys of lower levels through their children."""
    below: dict[str, list[ColumnElement[bool]]] = defaultdict(list)
    for keyword, value in query.filters.items():
        if not value:
            continue  # universal matching
        key_ = ATTRIBUTES[keyword]
        try:
            condition = key_.match(key_.column, value, glob)  # type: ignore[misc]
        except Refused as refused:
            raise _bad(keyword, refused.comment) from None
        if DEPTH[key_.level] <= DEPTH[query.level]:
            statement = statement.where(condition)
        else:
            below[key_.level].append(condition)
    if below["SERIES"] or (below["IMAGE"] and query.level == "STUDY"):
        children = [Series.study_pk == Study.id, *below["SERIES"]]
        if below["IMAGE"]:
            children += [Instance.series_pk == Series.id, *below["IMAGE"]]
        statement = statement.where(exists().where(and_(*children)))
    elif below["IMAGE"]:
        statement = statement.where(exists().where(Instance.series_pk == Series.id, *below["IMAGE"]))
    return statement


# --- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """The stored file a result's other attributes are read from."""

    storage_key: str
    retrieve_path: tuple[str, str, str]


def _file_fields(query: Search) -> list[str]:
    return [keyword for keyword in query.fields if keyword not in ATTRIBUTES and keyword not in COMPUTED]


def _files_of(session: Session, query: Search, rows: list[Row[Any]]) -> dict[int, StoredFile]:
    """For each result that needs attributes the index lacks, the file to read them from (one query)."""
    if not rows or not _file_fields(query):
        return {}
    if query.level == "IMAGE":
        return {row.pk: StoredFile(row.storage_key, (row.StudyInstanceUID, row.SeriesInstanceUID,
                                                     row.SOPInstanceUID)) for row in rows}
    owner = Instance.series_pk if query.level == "SERIES" else Series.study_pk
    first = (
        select(owner.label("owner"), func.min(Instance.id).label("instance_pk"))
        .join(Series, Instance.series_pk == Series.id)
        .where(owner.in_([row.pk for row in rows]))
        .group_by(owner)
        .subquery()
    )
    found = session.execute(
        select(first.c.owner, Instance.storage_key, Study.study_uid, Series.series_uid, Instance.sop_instance_uid)
        .join(Instance, Instance.id == first.c.instance_pk)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
    ).all()
    return {
        row.owner: StoredFile(row.storage_key, (row.study_uid, row.series_uid, row.sop_instance_uid))
        for row in found
    }


def _result(query: Search, row: Row[Any], stored: StoredFile | None, base: str) -> dict[str, Any]:
    """One result in the DICOM JSON model, its attributes in tag order."""
    values = row._mapping
    result = dict(attribute(keyword, values[keyword]) for keyword in query.fields if keyword in values)
    uids = [values[UNIQUE[level]] for level in LEVELS[: LEVELS.index(query.level) + 1]]
    if "RetrieveURL" in query.fields:
        result.update([attribute("RetrieveURL", retrieve_url(base, *uids))])
    if "InstanceAvailability" in query.fields:
        result.update([attribute("InstanceAvailability", "ONLINE")])
    wanted = _file_fields(query)
    if wanted:
        result.update(_from_file(wanted, stored, base))
    return dict(sorted(result.items()))


def _from_file(keywords: list[str], stored: StoredFile | None, base: str) -> dict[str, Any]:
    """The ``keywords`` as the stored file holds them (present without value where it does not)."""
    tags = [tag_for_keyword(keyword) for keyword in keywords]
    found: dict[str, Any] = {}
    if stored is not None:
        url = retrieve_url(base, *stored.retrieve_path)
        try:
            ds = read_header(backend().archive.storage.path(stored.storage_key), tags=tags)
            found = dataset(ds, lambda where: f"{url}/bulk/{where}", tags=set(tags))
        except Exception as exc:  # noqa: BLE001 - a damaged file costs its attributes, not the search
            log.error("cannot read %s for a search result: %s", stored.storage_key, exc)
    return {key(tag): found.get(key(tag)) or element(dictionary_VR(tag), None) for tag in tags}
