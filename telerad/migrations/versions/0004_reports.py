"""Reports: the report, its addenda and signatures, signing keys, critical notices and deliveries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 14:03:59.004121
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import telerad.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signing_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('private_key', sa.Text(), nullable=False),
    sa.Column('certificate', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_signing_keys_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signing_keys')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_signing_keys_fingerprint'))
    )
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.create_index('ix_signing_keys_user_revoked', ['user_id', 'revoked_at'], unique=False)

    op.create_table('reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('study_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('template_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('findings', sa.Text(), nullable=False),
    sa.Column('impression', sa.Text(), nullable=False),
    sa.Column('critical', sa.Boolean(), nullable=False),
    sa.Column('critical_category', sa.String(length=64), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finalized_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_reports_author_id_users')),
    sa.ForeignKeyConstraint(['study_pk'], ['studies.id'], name=op.f('fk_reports_study_pk_studies')),
    sa.ForeignKeyConstraint(['task_id'], ['reading_tasks.id'], name=op.f('fk_reports_task_id_reading_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('study_pk', name=op.f('uq_reports_study_pk'))
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reports_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_reports_task_id'), ['task_id'], unique=False)

    op.create_table('critical_notices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('study_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('notified_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('escalated_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['users.id'], name=op.f('fk_critical_notices_acknowledged_by_id_users')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_critical_notices_report_id_reports')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_critical_notices_site_id_sites')),
    sa.ForeignKeyConstraint(['study_pk'], ['studies.id'], name=op.f('fk_critical_notices_study_pk_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_critical_notices'))
    )
    with op.batch_alter_table('critical_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_critical_notices_report_id'), ['report_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_critical_notices_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_critical_notices_study_pk'), ['study_pk'], unique=False)

    op.create_table('report_addenda',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('created_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signed_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_report_addenda_author_id_users')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_report_addenda_report_id_reports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_addenda'))
    )
    with op.batch_alter_table('report_addenda', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_addenda_report_id'), ['report_id'], unique=False)

    op.create_table('report_signatures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('addendum_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('signer_id', sa.Integer(), nullable=False),
    sa.Column('signed_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('certificate', sa.Text(), nullable=False),
    sa.Column('pdf_key', sa.String(length=160), nullable=True),
    sa.Column('pdf_sha256', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['addendum_id'], ['report_addenda.id'], name=op.f('fk_report_signatures_addendum_id_report_addenda')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_report_signatures_report_id_reports')),
    sa.ForeignKeyConstraint(['signer_id'], ['users.id'], name=op.f('fk_report_signatures_signer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_signatures'))
    )
    with op.batch_alter_table('report_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_signatures_report_id'), ['report_id'], unique=False)

    op.create_table('report_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('signature_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('created_at', telerad.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', telerad.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_report_deliveries_report_id_reports')),
    sa.ForeignKeyConstraint(['signature_id'], ['report_signatures.id'], name=op.f('fk_report_deliveries_signature_id_report_signatures')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_deliveries'))
    )
    with op.batch_alter_table('report_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_deliveries_report_id'), ['report_id'], unique=False)
        batch_op.create_index('ix_report_deliveries_state_next', ['state', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('report_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_report_deliveries_state_next')
        batch_op.drop_index(batch_op.f('ix_report_deliveries_report_id'))

    op.drop_table('report_deliveries')
    with op.batch_alter_table('report_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_signatures_report_id'))

    op.drop_table('report_signatures')
    with op.batch_alter_table('report_addenda', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_addenda_report_id'))

    op.drop_table('report_addenda')
    with op.batch_alter_table('critical_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_critical_notices_study_pk'))
        batch_op.drop_index(batch_op.f('ix_critical_notices_site_id'))
        batch_op.drop_index(batch_op.f('ix_critical_notices_report_id'))

    op.drop_table('critical_notices')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reports_task_id'))
        batch_op.drop_index(batch_op.f('ix_reports_state'))

    op.drop_table('reports')
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_signing_keys_user_revoked')

    op.drop_table('signing_keys')
