"""legacy migration: progress and error tables of scripts/migrate_legacy.py

Revision ID: 0106_legacy_migration
Revises: 0005_read_side
Create Date: 2026-11-30 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0106_legacy_migration"
down_revision = "0005_read_side"
branch_labels = None
depends_on = None

TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "legacy_migration",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_guid", sa.String(36), nullable=True),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("migrated", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("updated", sa.DateTime, nullable=False),
        **TABLE_ARGS,
    )
    op.create_table(
        "legacy_migration_error",
        sa.Column("guid", sa.String(64), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        **TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("legacy_migration_error")
    op.drop_table("legacy_migration")
