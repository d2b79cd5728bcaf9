"""release_factor_count: the failure analysis's counts, kept up to date by the enrichment

Analysing a release of 10,000 reports used to expand every report's facts (its prerequisite
list, its environment, its ``perl -V`` set) at read time: about 1 s on real-shaped data.
The enrichment now adds each report's contribution (one row per factor and value, FAIL /
PASS / other counts side by side) in the transaction that writes its facts, and marks the
report ``counted``; the analysis reads the release's count rows (issue 19).

Reports already enriched start uncounted: the analysis counts them from their facts, as
before, until ``python -m scripts.backlog --enrich`` (the enrichment backfill) has counted
them.

Revision ID: 0123_release_factor_counts
Revises: 0122_dist_version_fulldate
Create Date: 2026-12-07 17:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0123_release_factor_counts"
down_revision = "0122_dist_version_fulldate"
branch_labels = None
depends_on = None

TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}
UnsignedInt = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql")


def upgrade() -> None:
    # A plain ADD COLUMN on both backends (instant on MariaDB; SQLite's batch mode would copy
    # the table, under the report_prereq view that reads it).
    op.add_column("report_facts", sa.Column("counted", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "analysis_release",
        sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
        sa.Column("dist", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.UniqueConstraint("dist", "version", name="analysis_release_dist_version"),
        **TABLE_ARGS,
    )
    op.create_table(
        "release_factor_count",
        sa.Column("release_id", UnsignedInt, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("name_id", UnsignedInt, nullable=False),
        sa.Column("value_id", UnsignedInt, nullable=False),
        sa.Column("fails", sa.Integer, nullable=False),
        sa.Column("passes", sa.Integer, nullable=False),
        sa.Column("others", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("release_id", "kind", "name_id", "value_id"),
        **TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("release_factor_count")
    op.drop_table("analysis_release")
    op.drop_column("report_facts", "counted")
