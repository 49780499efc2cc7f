"""login_failures (the login throttle shared by every web process); where a source's
position came from

Revision ID: 0002_webnames
Revises: 0002_webux
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_webnames'
down_revision = '0002_webux'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_failures',
        sa.Column('bucket', sa.String(length=64), nullable=False),
        sa.Column('window_start', sa.DateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('bucket'),
    )
    with op.batch_alter_table('login_failures') as batch:
        batch.create_index(batch.f('ix_login_failures_window_start'), ['window_start'],
                           unique=False)
    with op.batch_alter_table('sources') as batch:
        batch.add_column(sa.Column('position_origin', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('position_note', sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sources') as batch:
        batch.drop_column('position_note')
        batch.drop_column('position_origin')
    with op.batch_alter_table('login_failures') as batch:
        batch.drop_index(batch.f('ix_login_failures_window_start'))
    op.drop_table('login_failures')
