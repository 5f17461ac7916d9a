"""Turnaround milestones on each reading task: first assignment, first opening, first delivery, and its reader.

A station's latest study is found by a new index on studies. Existing tasks are filled in from their timelines
(the first opening was not recorded before this revision).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:50:43.885858
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import telerad.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reading_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assigned_at', telerad.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('first_opened_at', telerad.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', telerad.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reader_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_reading_tasks_kind_assigned', ['kind', 'assigned_at'], unique=False)
        batch_op.create_index('ix_reading_tasks_kind_breached', ['kind', 'breached_at'], unique=False)
        batch_op.create_index('ix_reading_tasks_kind_delivered', ['kind', 'delivered_at'], unique=False)
        batch_op.create_index('ix_reading_tasks_kind_first_opened', ['kind', 'first_opened_at'], unique=False)
        batch_op.create_index('ix_reading_tasks_kind_signed', ['kind', 'signed_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_reading_tasks_reader_id_users'), 'users', ['reader_id'], ['id'])

    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.create_index('ix_studies_site_last_received_at', ['site_id', 'last_received_at'], unique=False)

    for column, kinds in (("assigned_at", "'assigned', 'claimed'"), ("delivered_at", "'report_delivered'")):
        op.execute(
            f"UPDATE reading_tasks SET {column} = (SELECT min(e.at) FROM task_events e "
            f"WHERE e.task_id = reading_tasks.id AND e.kind IN ({kinds}))"
        )
    op.execute("UPDATE reading_tasks SET reader_id = COALESCE(signed_by_id, holder_id, assignee_id)")


def downgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_index('ix_studies_site_last_received_at')

    with op.batch_alter_table('reading_tasks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_reading_tasks_reader_id_users'), type_='foreignkey')
        batch_op.drop_index('ix_reading_tasks_kind_signed')
        batch_op.drop_index('ix_reading_tasks_kind_first_opened')
        batch_op.drop_index('ix_reading_tasks_kind_delivered')
        batch_op.drop_index('ix_reading_tasks_kind_breached')
        batch_op.drop_index('ix_reading_tasks_kind_assigned')
        batch_op.drop_column('reader_id')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('first_opened_at')
        batch_op.drop_column('assigned_at')

