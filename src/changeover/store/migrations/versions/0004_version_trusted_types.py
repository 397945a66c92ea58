"""the skops types a version was pushed trusting (--trust-type, CHANGEOVER_SKOPS_TRUSTED_TYPES)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # versions pushed before: none (a skops file with untrusted types was pushed with --trust, whole)
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trusted_types', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_column('trusted_types')
