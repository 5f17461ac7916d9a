"""Telerad's own ECG measurements, one row per measured waveform instance.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:28:30.784719
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import telerad.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ecg_measurements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('heart_rate', sa.Double(), nullable=True),
    sa.Column('rr_ms', sa.Double(), nullable=True),
    sa.Column('pr_ms', sa.Double(), nullable=True),
    sa.Column('qrs_ms', sa.Double(), nullable=True),
    sa.Column('qt_ms', sa.Double(), nullable=True),
    sa.Column('qtc_bazett_ms', sa.Double(), nullable=True),
    sa.Column('qtc_fridericia_ms', sa.Double(), nullable=True),
    sa.Column('p_axis', sa.Double(), nullable=True),
    sa.Column('qrs_axis', sa.Double(), nullable=True),
    sa.Column('t_axis', sa.Double(), nullable=True),
    sa.Column('beats', sa.Integer(), nullable=True),
    sa.Column('beats_in_median', sa.Integer(), nullable=True),
    sa.Column('device', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=400), nullable=True),
    sa.Column('computed_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ecg_measurements')),
    sa.UniqueConstraint('sop_instance_uid', name=op.f('uq_ecg_measurements_sop_instance_uid'))
    )
    with op.batch_alter_table('ecg_measurements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ecg_measurements_study_uid'), ['study_uid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ecg_measurements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ecg_measurements_study_uid'))

    op.drop_table('ecg_measurements')
