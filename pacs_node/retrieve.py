"""C-MOVE and C-GET SCP: archived instances sent back exactly as they were stored (PS3.4 C.4.2, C.4.3).

pynetdicom's retrieve service classes take only a pydicom ``Dataset`` per
sub-operation and encode it with pydicom, which does not give back every
stored file byte for byte (it drops group lengths, recomputes item lengths,
re-deflates). So each instance travels as a :class:`StoredInstance`, which
pynetdicom's encoder, wrapped below, answers with the stored data set itself.
An instance whose stored transfer syntax the peer did not accept for its SOP
class fails that sub-operation instead of being converted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import association, build_context
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification
from sqlalchemy import Row, select
from sqlalchemy.exc import SQLAlchemyError

from pacs_node.archive import Archive, Refused
from pacs_node.index import Sender
from pacs_node.query import instances_to_retrieve, read_request
from pacs_node.scp import failure
from pacs_node.storage import FileStorage
from telerad import audit
from telerad.sites import Site, subtree_ids

log = logging.getLogger(__name__)

#: An association offers at most 128 presentation contexts (PS3.8 9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128


class StoredInstance(Dataset):
    """An archived instance for a C-STORE sub-operation: its UIDs and its stored file."""

    def __init__(self, path: Path, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> None:
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid
        self.file_meta = FileMetaDataset()
        self.file_meta.TransferSyntaxUID = transfer_syntax
        self.path = path

    def encoded(self, is_implicit_vr: bool, is_little_endian: bool, deflated: bool) -> bytes | None:
        """The stored data set, or None if the presentation context asks for another encoding.

        pynetdicom matches a compressed transfer syntax only exactly and offers
        to convert only between uncompressed ones, which these three flags tell apart.
        """
        syntax = self.file_meta.TransferSyntaxUID
        if (syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated) != (
            is_implicit_vr, is_little_endian, deflated,
        ):
            log.warning("%s is stored as %s; the peer did not accept that", self.SOPInstanceUID, syntax.name)
            return None
        _, offset = split_dataset(self.path)
        with self.path.open("rb") as stored:
            stored.seek(offset)
            return stored.read()


def _encode(ds: Dataset, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False) -> bytes | None:
    """pynetdicom's encoder for C-STORE requests, giving a :class:`StoredInstance` as stored."""
    if isinstance(ds, StoredInstance):
        return ds.encoded(is_implicit_vr, is_little_endian, deflated)
    return encode(ds, is_implicit_vr, is_little_endian, deflated)


# ``Association.send_c_store`` encodes with this name; a None answer fails the sub-operation.
association.encode = _encode


def handle_move(event: Event, archive: Archive, sender: Sender | None) -> Iterator[Any]:
    """C-MOVE SCP (PS3.4 C.4.2.3.1): the destination, the number of sub-operations, then each instance.

    The Move Destination must be the return AE title of a registered site;
    otherwise pynetdicom answers 0xA801 (Move Destination Unknown). A study
    goes only to a site that may see it itself (the site that sent it, or one
    above it in the alliance tree): a county cannot move one village's images
    to another village.
    """
    with archive.sessions() as session:
        destination = session.execute(
            select(Site.id, Site.return_host, Site.return_port).where(Site.return_ae_title == event.move_destination)
        ).first()
        receivable = subtree_ids(session, destination.id) if destination is not None else set()
    if destination is None or not destination.return_host or not destination.return_port:
        yield None, None
        return
    address = (destination.return_host, destination.return_port)
    try:
        instances = _select(event, archive, sender, str(event.move_destination))
        foreign = sorted({row.study_uid for row in instances if row.site_id not in receivable})
        if foreign:
            raise Refused(0xC001, f"{event.move_destination} may not receive study {foreign[0]}")
    except Refused as refused:
        log.warning("C-MOVE from %s refused: %s", event.assoc.requestor.ae_title, refused)
        # pynetdicom reports a failure only once associated with the destination.
        yield *address, {"contexts": [build_context(Verification)]}
        yield 1
        yield failure(refused.status, refused.comment), None
        return
    yield *address, {"contexts": _contexts(instances)}
    yield from _sub_operations(event, archive.storage, instances)


def handle_get(event: Event, archive: Archive, sender: Sender | None) -> Iterator[Any]:
    """C-GET SCP (PS3.4 C.4.3.3.1): the number of sub-operations, then each instance, on this association."""
    try:
        instances = _select(event, archive, sender, event.assoc.requestor.ae_title)
    except Refused as refused:
        log.warning("C-GET from %s refused: %s", event.assoc.requestor.ae_title, refused)
        yield 1
        yield failure(refused.status, refused.comment), None
        return
    yield from _sub_operations(event, archive.storage, instances)


def _select(event: Event, archive: Archive, sender: Sender | None, destination: str) -> list[Row[Any]]:
    """The instances the request selects, the retrieval of each study audited; raises :class:`Refused`."""
    request = read_request(event, sender, retrieve=True)
    requestor = event.assoc.requestor.ae_title
    try:
        with archive.sessions() as session, session.begin():
            instances = instances_to_retrieve(session, request)
            for study_uid, count in Counter(row.study_uid for row in instances).items():
                audit.record(
                    session, requestor, "study.retrieved", "study", study_uid,
                    destination=destination, level=request.level, instances=count,
                )
    except SQLAlchemyError as exc:
        log.error("retrieve failed: %s", exc)
        raise Refused(0xA701, "archive index unavailable, retry later") from exc
    log.info("retrieve %s by %s to %s: %d instances", request.level, requestor, destination, len(instances))
    return instances


def _contexts(instances: list[Row[Any]]) -> list[PresentationContext]:
    """One presentation context per stored SOP class and transfer syntax, so each is accepted alone."""
    pairs = sorted({(row.sop_class_uid, row.transfer_syntax) for row in instances})
    return [build_context(sop_class, syntax) for sop_class, syntax in pairs[:MAX_CONTEXTS]]


def _sub_operations(event: Event, storage: FileStorage, instances: list[Row[Any]]) -> Iterator[Any]:
    """The number of C-STORE sub-operations, then one per instance until the peer cancels."""
    yield len(instances)
    for row in instances:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, StoredInstance(
            storage.path(row.storage_key), row.sop_class_uid, row.sop_instance_uid, row.transfer_syntax
        )
