"""one heartbeat row per gateway replica: its recorder's stall, for the judge ("metrics stale since")

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replicas',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('recorder_stalled_since', sa.Float(), nullable=True),
    sa.Column('recorder_pending', sa.Integer(), nullable=False),
    sa.Column('recorder_dropped', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_replicas'))
    )


def downgrade() -> None:
    op.drop_table('replicas')
