"""Alembic environment: every package's tables on one metadata."""

from __future__ import annotations

from alembic import context
import pacs_node.index  # noqa: F401 - registers the archive index tables
import reading_queue.assignment  # noqa: F401
import reading_queue.notify  # noqa: F401
import reading_queue.tasks  # noqa: F401
import telerad.audit  # noqa: F401
import telerad.events  # noqa: F401
import telerad.users  # noqa: F401
import reports.models  # noqa: F401 - registers the report tables
import reports.quality  # noqa: F401 - registers the peer review table
import viewer.ecg_measurements  # noqa: F401 - registers the ECG measurements table
from telerad.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL for the migrations without a database connection."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply the migrations to the configured database."""
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
