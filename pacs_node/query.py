"""C-FIND SCP and the matching shared with C-MOVE and C-GET (PS3.4 Annex C).

Patient Root and Study Root Query/Retrieve Information Models (C.6.1, C.6.2).
Matching keys become SQL conditions on the index (C.2.2.2): universal,
single value, wildcard (``*``, ``?``), list of UID and range matching. Values
match case-sensitively, except Patient's Name, which ignores case and matches
any of its component groups (so ``王*`` finds ``Wang^XiaoDong=王^小东``).
A calling site sees only the studies of its own part of the alliance tree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pynetdicom.events import Event
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)
from sqlalchemy import ColumnElement, Row, Select, and_, exists, literal, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pacs_node.archive import Archive, Refused
from pacs_node.attributes import text_of
from pacs_node.index import Instance, Patient, Sender, Series, Study
from pacs_node.scp import failure
from telerad.sites import subtree_ids

log = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
}
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
TABLES: dict[str, Any] = {"PATIENT": Patient, "STUDY": Study, "SERIES": Series, "IMAGE": Instance}
#: How each level's table joins the one above it.
PARENTS = {
    "IMAGE": (Series, Instance.series_pk == Series.id),
    "SERIES": (Study, Series.study_pk == Study.id),
    "STUDY": (Patient, Study.patient_pk == Patient.id),
}

Matcher = Callable[[Any, str, bool], ColumnElement[bool]]


def _wildcard(column: Any, value: str, glob: bool, fold_case: bool = False) -> ColumnElement[bool]:
    """Wildcard matching (C.2.2.2.4): ``*`` any run of characters, ``?`` any one character."""
    if glob and not fold_case:  # SQLite's LIKE ignores ASCII case; its GLOB does not.
        return column.op("GLOB")(value.replace("[", "[[]"))
    like = value.replace("!", "!!").replace("%", "!%").replace("_", "!_").replace("*", "%").replace("?", "_")
    return column.ilike(like, escape="!") if fold_case else column.like(like, escape="!")


def _plain(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """Single value matching (C.2.2.2.1), or wildcard matching if the value holds ``*`` or ``?``."""
    return _wildcard(column, value, glob) if "*" in value or "?" in value else column == value


def _name(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """Person name matching, case-insensitive and on the whole name or any one component group."""
    patterns = [value] if "=" in value else [value, f"{value}=*", f"*={value}", f"*={value}=*"]
    return or_(*(_wildcard(column, pattern, glob, fold_case=True) for pattern in patterns))


def _uids(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """List of UID matching (C.2.2.2.2): any of the backslash-separated UIDs."""
    return column.in_(value.split("\\"))


def _range(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """Range matching (C.2.2.2.5) of DA and TM values: ``A-B``, ``A-``, ``-B``, or a single value."""
    if "-" not in value:
        return column == value
    low, high = value.split("-", 1)
    bounds = [column >= low] if low else []
    bounds += [column <= high] if high else []
    return and_(column != "", *bounds)


def _integer(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """Single value matching of an IS value."""
    try:
        return column == int(value)
    except ValueError:
        raise Refused(0xC000, f"not an integer: {value!r}") from None


def _any_modality(column: Any, value: str, glob: bool) -> ColumnElement[bool]:
    """Modalities in Study: any of the requested modalities is among the study's."""
    wrapped = literal("\\") + column + literal("\\")
    return or_(*(_wildcard(wrapped, f"*\\{modality}\\*", glob) for modality in value.split("\\")))


@dataclass(frozen=True)
class Key:
    """An attribute the index answers: its level, its column and how it matches (None: return only)."""

    level: str
    column: Any
    match: Matcher | None = _plain


KEYS = {
    "PatientID": Key("PATIENT", Patient.patient_id),
    "IssuerOfPatientID": Key("PATIENT", Patient.issuer),
    "PatientName": Key("PATIENT", Patient.name, _name),
    "PatientSex": Key("PATIENT", Patient.sex),
    "PatientBirthDate": Key("PATIENT", Patient.birth_date, _range),
    "StudyInstanceUID": Key("STUDY", Study.study_uid, _uids),
    "StudyDate": Key("STUDY", Study.study_date, _range),
    "StudyTime": Key("STUDY", Study.study_time, _range),
    "AccessionNumber": Key("STUDY", Study.accession_number),
    "StudyID": Key("STUDY", Study.study_id),
    "StudyDescription": Key("STUDY", Study.description),
    "ReferringPhysicianName": Key("STUDY", Study.referring_physician),
    "ModalitiesInStudy": Key("STUDY", Study.modalities, _any_modality),
    "NumberOfStudyRelatedSeries": Key("STUDY", Study.num_series, None),
    "NumberOfStudyRelatedInstances": Key("STUDY", Study.num_instances, None),
    "SeriesInstanceUID": Key("SERIES", Series.series_uid, _uids),
    "Modality": Key("SERIES", Series.modality),
    "SeriesNumber": Key("SERIES", Series.series_number, _integer),
    "SeriesDescription": Key("SERIES", Series.description),
    "BodyPartExamined": Key("SERIES", Series.body_part),
    "NumberOfSeriesRelatedInstances": Key("SERIES", Series.num_instances, None),
    "SOPInstanceUID": Key("IMAGE", Instance.sop_instance_uid, _uids),
    "SOPClassUID": Key("IMAGE", Instance.sop_class_uid, _uids),
    "InstanceNumber": Key("IMAGE", Instance.instance_number, _integer),
}
#: Attributes of a request that every response sets itself.
OWN = ("SpecificCharacterSet", "QueryRetrieveLevel")


@dataclass(frozen=True)
class Request:
    """A decoded C-FIND, C-MOVE or C-GET identifier."""

    site_id: int
    level: str
    #: The keys the index answers, at the level or above, with their values ("" matches all).
    values: dict[str, str]
    #: The unique keys of the level and the levels above it in the information model.
    unique_keys: tuple[str, ...]
    #: Other requested attributes: returned with zero length.
    others: tuple[tuple[BaseTag, str], ...]
    #: Whether some of those carried a value the node cannot match on (status 0xFF01).
    unmatched: bool


def read_request(event: Event, sender: Sender | None, retrieve: bool = False) -> Request:
    """The request's identifier, checked against its information model (C.4.1.1.3, C.4.2.1.4).

    A retrieve must name the unique key of its level. Raises :class:`Refused`.
    """
    if sender is None:
        raise Refused(0x0124, "calling AE title not registered")
    try:
        identifier = event.identifier
        elements = [elem for elem in identifier if elem.tag.element]  # not group lengths
        level = text_of(identifier, "QueryRetrieveLevel")
    except Exception as exc:  # noqa: BLE001 - pydicom raises whatever decoding the identifier raised
        raise Refused(0xC000, f"cannot decode identifier: {exc}") from None
    model = LEVELS if event.request.AffectedSOPClassUID in PATIENT_ROOT else LEVELS[1:]
    if not level:
        raise Refused(0xA900, "missing Query/Retrieve Level (0008,0052)")
    if level not in model:
        raise Refused(0xA900, f"Query/Retrieve Level {level!r} not in this information model")
    depth = LEVELS.index(level)
    values = {
        elem.keyword: text_of(identifier, elem.keyword)
        for elem in elements
        if elem.keyword in KEYS and LEVELS.index(KEYS[elem.keyword].level) <= depth
    }
    if retrieve and not values.get(UNIQUE_KEYS[level]):
        raise Refused(0xA900, f"a {level} retrieve needs {UNIQUE_KEYS[level]}")
    others = [elem for elem in elements if elem.keyword not in values and elem.keyword not in OWN]
    return Request(
        site_id=sender.site_id,
        level=level,
        values=values,
        unique_keys=tuple(UNIQUE_KEYS[name] for name in model[: model.index(level) + 1]),
        others=tuple((elem.tag, elem.VR) for elem in others),
        unmatched=any(not elem.is_empty for elem in others),
    )


def find_matches(session: Session, request: Request) -> list[Row[Any]]:
    """The entities at the request's level that match it and that the calling site may see.

    Each row holds the requested keys and the unique keys, labelled with their keywords.
    """
    keywords = dict.fromkeys([*request.unique_keys, *request.values])
    statement = select(*(KEYS[keyword].column.label(keyword) for keyword in keywords))
    statement = _matching(statement, request, session)
    return list(session.execute(statement.order_by(TABLES[request.level].id)).all())


def instances_to_retrieve(session: Session, request: Request) -> list[Row[Any]]:
    """The instances a retrieve request selects among those the calling site may see."""
    statement = select(
        Study.study_uid,
        Study.site_id,
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax,
        Instance.storage_key,
    )
    statement = _matching(statement, replace(request, level="IMAGE"), session)
    return list(session.execute(statement.order_by(Instance.id)).all())


def _matching(statement: Select[Any], request: Request, session: Session) -> Select[Any]:
    """``statement`` over the request level's table, narrowed to visible, matching entities."""
    statement = statement.select_from(TABLES[request.level])
    for level in LEVELS[LEVELS.index(request.level) :: -1]:
        if level in PARENTS:
            statement = statement.join(*PARENTS[level])
    visible = Study.site_id.in_(subtree_ids(session, request.site_id))
    if request.level == "PATIENT":
        statement = statement.where(exists().where(Study.patient_pk == Patient.id, visible))
    else:
        statement = statement.where(visible)
    glob = session.get_bind().dialect.name == "sqlite"
    for keyword, value in request.values.items():
        key = KEYS[keyword]
        if value and key.match is not None:
            statement = statement.where(key.match(key.column, value, glob))
    return statement


def _response(request: Request, row: Row[Any]) -> Dataset:
    """The identifier of one match (C.4.1.1.3.2): Unicode text, empty values for unsupported keys."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for tag, vr in request.others:
        ds.add_new(tag, vr, None)
    ds.QueryRetrieveLevel = request.level
    for keyword, value in row._mapping.items():
        setattr(ds, keyword, value)
    return ds


def handle_find(
    event: Event, archive: Archive, sender: Sender | None
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """C-FIND SCP (PS3.4 C.4.1.3.1): a Pending response per match, then pynetdicom answers Success."""
    try:
        request = read_request(event, sender)
        with archive.sessions() as session:
            matches = find_matches(session, request)
    except Refused as refused:
        log.warning("C-FIND from %s refused: %s", event.assoc.requestor.ae_title, refused)
        yield failure(refused.status, refused.comment), None
        return
    except SQLAlchemyError as exc:
        log.error("C-FIND failed: %s", exc)
        yield failure(0xA700, "archive index unavailable, retry later"), None
        return
    log.info("C-FIND %s from %s: %d matches", request.level, event.assoc.requestor.ae_title, len(matches))
    pending = 0xFF01 if request.unmatched else 0xFF00
    for row in matches:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield pending, _response(request, row)
