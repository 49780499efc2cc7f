"""photometry comment, job retryable

Revision ID: 0002_webux
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_webux'
down_revision = '0002_server'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('photometry') as batch:
        batch.add_column(sa.Column('comment', sa.Text(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('retryable', sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('retryable')
    with op.batch_alter_table('photometry') as batch:
        batch.drop_column('comment')
