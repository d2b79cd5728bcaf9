"""read side indexes: cpanstats by osname (the /v3/summary?osname= query)

Revision ID: 0005_read_side
Revises: 0001
Create Date: 2026-11-30 00:20:00
"""

from alembic import op

revision = "0005_read_side"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.create_index("cpanstats_osname", ["osname"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.drop_index("cpanstats_osname")
