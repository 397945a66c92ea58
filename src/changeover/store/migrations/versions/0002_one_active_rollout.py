"""at most one active rollout per model, in the schema

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a store that already holds two active rollouts of one model (the race this index closes):
    # the newest stays active, the older ones are ended as aborted by the migration
    op.execute(sa.text(
        "UPDATE rollouts SET active = false WHERE active AND id NOT IN "
        "(SELECT max(id) FROM rollouts WHERE active GROUP BY model)"))
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.create_index('uq_rollouts_one_active', ['model'], unique=True,
                              sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))


def downgrade() -> None:
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.drop_index('uq_rollouts_one_active')
