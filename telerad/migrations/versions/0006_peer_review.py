"""Quality control: the peer reviews of final reports drawn at random, with their reviewer, score and addendum.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 16:03:21.074864
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import telerad.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('peer_reviews',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('new_reader', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('score', sa.String(length=16), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('assigned_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('addendum_draft', sa.Text(), nullable=True),
    sa.Column('addendum_started_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('addendum_started_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['addendum_started_by_id'], ['users.id'], name=op.f('fk_peer_reviews_addendum_started_by_id_users')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_peer_reviews_report_id_reports')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_peer_reviews_reviewer_id_users')),
    sa.ForeignKeyConstraint(['task_id'], ['reading_tasks.id'], name=op.f('fk_peer_reviews_task_id_reading_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_peer_reviews')),
    sa.UniqueConstraint('report_id', name=op.f('uq_peer_reviews_report_id'))
    )
    with op.batch_alter_table('peer_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_peer_reviews_done_at'), ['done_at'], unique=False)
        batch_op.create_index('ix_peer_reviews_reviewer_state', ['reviewer_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_peer_reviews_task_id'), ['task_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('peer_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_peer_reviews_task_id'))
        batch_op.drop_index('ix_peer_reviews_reviewer_state')
        batch_op.drop_index(batch_op.f('ix_peer_reviews_done_at'))

    op.drop_table('peer_reviews')
