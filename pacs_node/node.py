"""Running the DICOM node: receiver processes sharing one port, and housekeeping.

``telerad dicom --workers N`` starts N receiver processes bound to the same
port with ``SO_REUSEPORT`` (the kernel spreads associations over them), so the
node scales past one Python process. Housekeeping — announcing complete
studies and relaying the outbox to the job queue — runs in the parent and is
safe to run in several nodes at once.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import socket
import threading
from socketserver import TCPServer
from dataclasses import dataclass

from pynetdicom.transport import ThreadedAssociationServer
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from pacs_node.archive import Archive
from pacs_node.index import Sender, complete_stable_studies
from pacs_node.scp import Registry, StorageProvider, build_ae
from pacs_node.storage import FileStorage
from telerad import broker, events
from telerad.config import Config
from telerad.db import make_engine, make_session_factory
from telerad.sites import Site, SiteAE

log = logging.getLogger(__name__)


class ReusePortServer(ThreadedAssociationServer):
    """An association server that shares its port with sibling processes (``SO_REUSEPORT``)."""

    def server_bind(self) -> None:
        """Bind as pynetdicom does, letting other receiver processes bind the same port."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def shutdown(self) -> None:
        """Stop accepting, abort the associations in progress and close the socket."""
        TCPServer.shutdown(self)
        self.server_close()
        for association in self.active_associations:
            association.abort()


@dataclass
class Receiver:
    """One receiving process's AE, archive and server."""

    config: Config
    sessions: sessionmaker
    archive: Archive
    registry: Registry
    server: ReusePortServer

    def refresh(self) -> None:
        """Reload the registered calling AE titles from the database."""
        self.registry.senders = load_senders(self.sessions)
        self.server.ae.require_calling_aet = self.registry.allowed()


def storage_for(config: Config) -> FileStorage:
    """The storage area under the configured data directory."""
    return FileStorage(config.data_dir / "storage")


def archive_for(config: Config, sessions: sessionmaker) -> Archive:
    """The archive (storage area and index) as configured: what every way in receives through."""
    strong = frozenset(identifier.issuer for identifier in config.identity.strong_identifiers)
    return Archive(storage_for(config), sessions, strong)


def load_senders(sessions: sessionmaker) -> dict[str, Sender]:
    """Every registered calling AE title with its site."""
    with sessions() as session:
        rows = session.execute(select(SiteAE.ae_title, Site.id, Site.code).join(Site)).all()
        return {title: Sender(site_id, code, title) for title, site_id, code in rows}


def start_receiver(config: Config, sessions: sessionmaker | None = None) -> Receiver:
    """Start listening for associations (in background threads) and return the receiver."""
    sessions = sessions or make_session_factory(make_engine(config.database_url))
    archive = archive_for(config, sessions)
    registry = Registry(load_senders(sessions))
    ae = build_ae(config.dicom.ae_title, config.dicom.max_pdu, config.dicom.network_timeout)
    ae.require_calling_aet = registry.allowed()
    provider = StorageProvider(archive, registry)
    server = ae.make_server(
        (config.dicom.host, config.dicom.port), evt_handlers=provider.handlers(), server_class=ReusePortServer
    )
    threading.Thread(target=server.serve_forever, name="dicom-acceptor", daemon=True).start()
    return Receiver(config, sessions, archive, registry, server)


def housekeep(config: Config, sessions: sessionmaker, queue: Queue | None) -> None:
    """One round: announce studies that became complete, then relay waiting events to ``queue``."""
    with sessions() as session, session.begin():
        for uid in complete_stable_studies(session, config.dicom.stable_seconds):
            log.info("study %s complete or updated; announced", uid)
    if queue is not None:
        events.relay(sessions, queue)


def _die_with_parent() -> None:
    """Ask Linux to stop this process when its parent dies (``kill -9`` of the node)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        log.debug("prctl unavailable; receiver will not follow its parent")


def _receiver_process(config: Config, stop_seconds: float = 5.0) -> None:
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    receiver = start_receiver(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(stop_seconds):
        try:
            receiver.refresh()
        except SQLAlchemyError as exc:
            log.warning("cannot refresh registered AE titles: %s", exc)
    receiver.server.shutdown()


def _spawn(config: Config, name: str) -> multiprocessing.process.BaseProcess:
    child = multiprocessing.get_context("spawn").Process(target=_receiver_process, args=(config,), name=name)
    child.start()
    return child


def run(config: Config, workers: int, stop: threading.Event, interval: float = 1.0) -> None:
    """Run the node until ``stop`` is set: receivers plus housekeeping in this process."""
    sessions = make_session_factory(make_engine(config.database_url))
    children: list[multiprocessing.process.BaseProcess] = []
    receiver = None
    if workers == 1:
        receiver = start_receiver(config, sessions)
    else:
        children = [_spawn(config, f"receiver-{number + 1}") for number in range(workers)]
    queue = broker.event_queue(broker.connect(config.redis.url)) if config.redis.url else None
    try:
        while not stop.wait(interval):
            try:
                if receiver is not None:
                    receiver.refresh()
                housekeep(config, sessions, queue)
            except (SQLAlchemyError, RedisError) as exc:
                log.warning("housekeeping deferred: %s", exc)
            for index, child in enumerate(children):
                if not child.is_alive():
                    log.error("%s exited with %s; starting it again", child.name, child.exitcode)
                    children[index] = _spawn(config, child.name)
    finally:
        if receiver is not None:
            receiver.server.shutdown()
        for child in children:
            child.terminate()
        for child in children:
            child.join(10)
