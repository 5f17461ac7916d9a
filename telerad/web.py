"""Assembly of the web application (Flask application factory)."""

from __future__ import annotations

from collections.abc import Iterator

from pathlib import Path

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

import viewer
from pacs_node import dicomweb
from pacs_node.index import Instance, Study
from pacs_node.node import archive_for
from reading_queue.access import visible_studies
from reading_queue.api import api
from reading_queue.jobs import figures_cache
from reports.api import reports_api
from reports.quality_api import quality_api
from reading_queue.tasks import ReadingTask, TaskState
from telerad import auth, clock
from telerad.config import Config
from telerad.db import make_engine, make_session_factory
from telerad.events import OutboxEvent
from viewer import i18n
from viewer.ohif import ohif
from viewer.dashboard import dashboard
from viewer.pages import pages
from viewer.quality import quality
from viewer.rendering import file_renderer
from viewer.station import station
from viewer.study import study
from viewer.worklist import worklist


def create_app(config: Config) -> Flask:
    """The web application: pages, the JSON API, DICOMweb, health and metrics."""
    front = Path(viewer.__file__).parent
    app = Flask("telerad", static_folder=front / "static", template_folder=front / "templates")
    sessions = make_session_factory(make_engine(config.database_url))
    app.extensions["telerad.config"] = config
    app.extensions["telerad.sessions"] = sessions
    app.extensions["telerad.figures_cache"] = figures_cache(config)
    auth.init_app(app, config)
    i18n.init_app(app, config.data_dir / "translations")

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return jsonify(status="unavailable", database=str(exc.__class__.__name__)), 503
        return jsonify(status="ok", database="ok"), 200

    registry = CollectorRegistry(auto_describe=True)
    registry.register(_ArchiveCollector(sessions))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.register_blueprint(api)
    app.register_blueprint(reports_api)  # reports: draft, signatures, addenda, critical findings, FHIR
    app.register_blueprint(quality_api)  # quality control: peer reviews, reader scorecards
    for blueprint in (pages, worklist, station, study, dashboard):
        app.register_blueprint(blueprint)
    app.register_blueprint(quality)  # the peer-review pages
    app.register_blueprint(ohif)  # OHIF Viewer at /ohif/ when web.ohif_dir is set
    renderer = file_renderer(app.extensions["viewer.image_cache"])
    dicomweb.init_app(app, archive_for(config, sessions), visible_studies, renderer)
    return app


class _ArchiveCollector(Collector):
    """Figures read from the database at scrape time, so every process reports the same."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.sessions() as session:
            studies = dict(session.execute(select(Study.state, func.count()).group_by(Study.state)).all())
            instances, stored_bytes = session.execute(
                select(func.count(Instance.id), func.coalesce(func.sum(Instance.size), 0))
            ).one()
            waiting = session.scalar(select(func.count()).where(OutboxEvent.sent_at.is_(None)))
            running = (TaskState.OPEN, TaskState.CLAIMED)
            tasks = session.execute(
                select(ReadingTask.priority, ReadingTask.state, func.count())
                .where(ReadingTask.state.in_(running))
                .group_by(ReadingTask.priority, ReadingTask.state)
            ).all()
            overdue = session.scalar(
                select(func.count()).where(ReadingTask.state.in_(running), ReadingTask.due_at < clock.now())
            )
        by_state = GaugeMetricFamily("telerad_studies", "Studies in the archive index by state.", labels=["state"])
        for state, count in sorted(studies.items()):
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily("telerad_instances", "Instances in the archive index.", value=instances)
        yield GaugeMetricFamily("telerad_stored_bytes", "Bytes of the current instance files.", value=stored_bytes)
        yield GaugeMetricFamily(
            "telerad_outbox_waiting", "Events waiting to be handed to the job queue.", value=waiting or 0
        )
        open_tasks = GaugeMetricFamily(
            "telerad_open_tasks", "Reading tasks not yet signed, by priority and state.", labels=["priority", "state"]
        )
        for priority, state, count in tasks:
            open_tasks.add_metric([priority, state], count)
        yield open_tasks
        yield GaugeMetricFamily("telerad_overdue_tasks", "Reading tasks past their deadline.", value=overdue or 0)
