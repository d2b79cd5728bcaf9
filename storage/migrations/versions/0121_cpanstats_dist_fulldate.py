"""cpanstats by (dist, fulldate): /v3/summary/<dist>?since=...&limit=... in date order

A distribution's reports newer than a date, oldest first, read from one index range in
order (no scan of the distribution's other reports, no sort): the question MetaCPAN and
authors' tools ask of distributions with hundreds of thousands of reports (issue 21).

Revision ID: 0121_dist_fulldate
Revises: 0119_report_facts
Create Date: 2026-12-07 03:40:00
"""

from alembic import op

revision = "0121_dist_fulldate"
down_revision = "0119_report_facts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.create_index("cpanstats_dist_fulldate", ["dist", "fulldate"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cpanstats", schema=None) as batch_op:
        batch_op.drop_index("cpanstats_dist_fulldate")
