"""Receiving an instance: parse what the index needs, store durably, index, answer.

One path for every way an instance arrives (C-STORE, STOW-RS). Success is
answered only once the file is durably on disk and indexed; anything else is
a :class:`Refused` carrying the DICOM status and comment for the sender.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from pacs_node.attributes import UnreadableInstance, read_attributes
from pacs_node.index import Outcome, Sender, UidCollisionError, flag_collision, index_instance
from pacs_node.storage import FileStorage, StoredObject

log = logging.getLogger(__name__)

# PS3.4 Annex B.2.3 C-STORE failure statuses used by the node.
OUT_OF_RESOURCES = 0xA700  # the storage area could not take the file
INDEX_UNAVAILABLE = 0xA701  # out of resources: the archive index could not be written
CANNOT_UNDERSTAND = 0xC000  # the dataset cannot be parsed or lacks a required UID
UID_CONFLICT = 0xC001  # cannot understand: the UID belongs to another site


class Refused(Exception):
    """An instance was not accepted; ``status`` and ``comment`` go back to the sender."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(f"0x{status:04X} {comment}")
        self.status = status
        self.comment = comment


@dataclass
class Archive:
    """The storage area and the index, taking instances in."""

    storage: FileStorage
    sessions: sessionmaker
    strong_issuers: frozenset[str] = frozenset()

    def receive(self, data: bytes, sender: Sender, expected_uid: str | None = None) -> Outcome:
        """Store and index one encoded PS3.10 instance from ``sender``.

        ``expected_uid`` is the SOP Instance UID the sender announced (C-STORE's
        Affected SOP Instance UID); a dataset that disagrees is refused.
        """
        try:
            attrs = read_attributes(data)
        except UnreadableInstance as exc:
            raise Refused(CANNOT_UNDERSTAND, str(exc)) from exc
        if expected_uid is not None and attrs.sop_instance_uid != expected_uid.strip():
            raise Refused(CANNOT_UNDERSTAND, "SOP Instance UID differs from the request's")
        digest = hashlib.sha256(data).hexdigest()
        try:
            stored = self.storage.put(data, digest)
        except OSError as exc:
            log.error("storage failed for %s: %s", attrs.sop_instance_uid, exc)
            raise Refused(OUT_OF_RESOURCES, f"storage failed: {exc.strerror or exc}") from exc
        for attempt in range(3):
            try:
                with self.sessions() as session, session.begin():
                    return index_instance(session, attrs, stored, sender, self.strong_issuers)
            except UidCollisionError as collision:
                log.warning("refused %s from %s: %s", attrs.sop_instance_uid, sender.ae_title, collision)
                self._flag(collision, stored, sender)
                raise Refused(UID_CONFLICT, f"{collision.uid_kind} UID belongs to another site") from None
            except IntegrityError:
                # Another process indexed the same patient, study or series at the same moment.
                if attempt == 2:
                    log.exception("index conflict persisted for %s", attrs.sop_instance_uid)
            except SQLAlchemyError as exc:
                log.error("index failed for %s: %s", attrs.sop_instance_uid, exc)
                raise Refused(INDEX_UNAVAILABLE, "archive index unavailable, retry later") from exc
        raise Refused(INDEX_UNAVAILABLE, "archive index busy, retry later")

    def _flag(self, collision: UidCollisionError, stored: StoredObject, sender: Sender) -> None:
        try:
            with self.sessions() as session, session.begin():
                flag_collision(session, collision, stored, sender)
        except SQLAlchemyError:
            log.exception("could not flag the UID collision on %s", collision.uid)
