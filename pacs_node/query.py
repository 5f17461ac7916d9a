"""C-FIND SCP (placeholder until the query service lands)."""

from pynetdicom.events import Event

from pacs_node.archive import Archive
from pacs_node.index import Sender


def handle_find(event: Event, archive: Archive, sender: Sender | None):  # type: ignore[no-untyped-def]
    yield 0xC000, None
