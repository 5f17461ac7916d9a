"""C-MOVE and C-GET SCP (placeholder until the retrieve service lands)."""

from pynetdicom.events import Event

from pacs_node.archive import Archive
from pacs_node.index import Sender


def handle_move(event: Event, archive: Archive, sender: Sender | None):  # type: ignore[no-untyped-def]
    yield None, None


def handle_get(event: Event, archive: Archive, sender: Sender | None):  # type: ignore[no-untyped-def]
    yield 0
