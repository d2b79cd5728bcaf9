"""cpanstats(dist, version) gains fulldate: /v3/summary/<dist>/<version>?limit= in date order

A release's reports oldest first, read from one index range in order. With the
(dist, version) index alone MariaDB walked the whole distribution in date order
(cpanstats_dist_fulldate) looking for the release's rows: 300 ms to the first byte for a
release of the largest distribution at 1 M rows (issue 21). The index keeps its name and
still serves every (dist) and (dist, version) lookup it served.

Revision ID: 0122_dist_version_fulldate
Revises: 0121_dist_fulldate
Create Date: 2026-12-07 03:50:00
"""

from alembic import op

revision = "0122_dist_version_fulldate"
down_revision = "0121_dist_fulldate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.drop_index("cpanstats_dist_version")
        batch_op.create_index("cpanstats_dist_version", ["dist", "version", "fulldate"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.drop_index("cpanstats_dist_version")
        batch_op.create_index("cpanstats_dist_version", ["dist", "version"], unique=False)
