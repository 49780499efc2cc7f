"""SkyPortal link of sources, push state of points, light-curve colour switch

Revision ID: 0002_skyportal
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_skyportal'
down_revision = '0002_systems'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('sources', sa.Column('skyportal_id', sa.String(length=64), nullable=True))
    op.add_column('sources', sa.Column('light_curve_colors', sa.Boolean(), nullable=False,
                                       server_default=sa.true()))
    op.add_column('photometry', sa.Column('skyportal_state', sa.String(length=16),
                                          nullable=False, server_default='off'))
    op.add_column('photometry', sa.Column('skyportal_id', sa.Integer(), nullable=True))
    op.add_column('photometry', sa.Column('skyportal_error', sa.Text(), nullable=True))
    op.add_column('photometry', sa.Column('skyportal_uid', sa.String(length=36), nullable=True))
    op.add_column('photometry', sa.Column('skyportal_attempts', sa.Integer(), nullable=False,
                                          server_default='0'))
    op.add_column('photometry', sa.Column('skyportal_next_at', sa.DateTime(), nullable=True))
    op.add_column('photometry', sa.Column('skyportal_claimed_at', sa.DateTime(),
                                          nullable=True))
    op.create_index('ix_photometry_skyportal_state', 'photometry', ['skyportal_state'])


def downgrade() -> None:
    op.drop_index('ix_photometry_skyportal_state', table_name='photometry')
    with op.batch_alter_table('photometry') as batch:
        for name in ('skyportal_claimed_at', 'skyportal_next_at', 'skyportal_attempts',
                     'skyportal_uid', 'skyportal_error', 'skyportal_id', 'skyportal_state'):
            batch.drop_column(name)
    with op.batch_alter_table('sources') as batch:
        batch.drop_column('light_curve_colors')
        batch.drop_column('skyportal_id')
