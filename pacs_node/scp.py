"""The DIMSE service provider: the pynetdicom application entity and its event handlers.

Handlers are bound to named events (``evt.EVT_C_STORE`` ...), pynetdicom's
single extension point. Services: Verification (PS3.4 Annex A), Storage
(Annex B), Query/Retrieve FIND, MOVE and GET (Annex C).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacs_node.archive import Archive, Refused
from pacs_node.index import Sender

log = logging.getLogger(__name__)

#: Transfer syntaxes accepted for storage; instances are kept exactly as received.
STORAGE_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
]
QUERY_MODELS = [PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind]
RETRIEVE_MODELS = [
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
]
#: Stand-in for "no calling AE title registered": an empty list would let everyone in.
#: The configuration allows only letters, digits, space, "_", "-" and "." in site AE titles, so never this.
_NOBODY = "*NO-SITE-AE*"


@dataclass
class Registry:
    """Calling AE titles registered to sites, shared with the running AE."""

    senders: dict[str, Sender] = field(default_factory=dict)

    def allowed(self) -> list[str]:
        """The titles pynetdicom lets associate."""
        return sorted(self.senders) or [_NOBODY]


def failure(status: int, comment: str) -> Dataset:
    """A status dataset with an Error Comment (0000,0902), LO: at most 64 characters."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def build_ae(ae_title: str, max_pdu: int, network_timeout: float) -> AE:
    """The application entity with every presentation context Telerad accepts."""
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu
    ae.network_timeout = network_timeout
    ae.acse_timeout = 30
    ae.dimse_timeout = network_timeout
    ae.maximum_associations = 64
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        # scp_role: a C-GET requestor may take the storage SCP role for the returned instances.
        ae.add_supported_context(context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES, scu_role=False, scp_role=True)
    for model in QUERY_MODELS + RETRIEVE_MODELS:
        ae.add_supported_context(model)
    return ae


class StorageProvider:
    """The C-STORE, C-FIND, C-MOVE and C-GET handlers over one archive."""

    def __init__(self, archive: Archive, registry: Registry) -> None:
        self.archive = archive
        self.registry = registry

    def handlers(self) -> list[tuple[Any, Any]]:
        """``(event, handler)`` pairs to bind to the association server."""
        from pacs_node.query import handle_find
        from pacs_node.retrieve import handle_get, handle_move

        return [
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, lambda event: handle_find(event, self.archive, self.sender(event))),
            (evt.EVT_C_MOVE, lambda event: handle_move(event, self.archive, self.sender(event))),
            (evt.EVT_C_GET, lambda event: handle_get(event, self.archive, self.sender(event))),
            (evt.EVT_REJECTED, self.on_rejected),
        ]

    def sender(self, event: Event) -> Sender | None:
        """The registered site behind the association's calling AE title."""
        return self.registry.senders.get(event.assoc.requestor.ae_title.strip())

    def on_store(self, event: Event) -> int | Dataset:
        """C-STORE (PS3.4 B.2.3): Success only once the instance is on disk and indexed."""
        sender = self.sender(event)
        if sender is None:
            return failure(0x0124, "calling AE title no longer registered")
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - pynetdicom raises whatever the decoder raised
            return failure(0xC000, f"cannot read dataset: {exc}")
        try:
            self.archive.receive(data, sender, expected_uid=event.request.AffectedSOPInstanceUID)
        except Refused as refused:
            log.warning("C-STORE from %s refused: %s", sender.ae_title, refused)
            return failure(refused.status, refused.comment)
        return 0x0000

    def on_rejected(self, event: Event) -> None:
        """Log every association refused at negotiation, with who tried (PS3.8 9.3.4)."""
        requestor = event.assoc.requestor
        log.warning(
            "association rejected: calling AE title %r from %s:%s not recognised",
            requestor.ae_title, requestor.address, requestor.port,
        )

