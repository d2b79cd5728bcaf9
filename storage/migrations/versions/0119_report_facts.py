"""report facts: what the report-text parser finds, in interned tables

Revision ID: 0119_report_facts
Revises: 0107_report_blocks
Create Date: 2026-12-07 00:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0119_report_facts"
down_revision = "0107_report_blocks"
branch_labels = None
depends_on = None

TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}
UnsignedInt = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql")
ReportId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Digest16 = sa.LargeBinary(16).with_variant(mysql.BINARY(16), "mysql")
LongText = sa.Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql")


def upgrade() -> None:
    op.create_table(
        "fact_string",
        sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
        sa.Column("digest", Digest16, nullable=False, unique=True),
        sa.Column("value", LongText, nullable=False),
        **TABLE_ARGS,
    )
    op.create_table(
        "fact_set",
        sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
        sa.Column("digest", Digest16, nullable=False, unique=True),
        **TABLE_ARGS,
    )
    op.create_table(
        "fact_set_item",
        sa.Column("set_id", UnsignedInt, nullable=False),
        sa.Column("name_id", UnsignedInt, nullable=False),
        sa.Column("value_id", UnsignedInt, nullable=False),
        sa.PrimaryKeyConstraint("set_id", "name_id"),
        **TABLE_ARGS,
    )
    op.create_table(
        "report_facts",
        sa.Column("report_id", ReportId, primary_key=True, autoincrement=False),
        sa.Column("parser", sa.SmallInteger, nullable=False),
        sa.Column("user_agent", UnsignedInt, nullable=True),
        sa.Column("build_offset", sa.Integer, nullable=True),
        sa.Column("config_set", UnsignedInt, nullable=True),
        sa.Column("env_set", UnsignedInt, nullable=True),
        sa.Column("perl_set", UnsignedInt, nullable=True),
        sa.Column("toolchain_set", UnsignedInt, nullable=True),
        sa.Column("failed_set", UnsignedInt, nullable=True),
        sa.Column("tests", sa.Integer, nullable=True),
        sa.Column("failures", sa.Integer, nullable=True),
        sa.Column("skipped", sa.Integer, nullable=True),
        sa.Column("todo_pass", sa.Integer, nullable=True),
        sa.Column("todo_fail", sa.Integer, nullable=True),
        sa.Column("duration", sa.Float, nullable=True),
        **TABLE_ARGS,
    )
    op.create_table(
        "report_prereq",
        sa.Column("report_id", ReportId, nullable=False),
        sa.Column("phase", UnsignedInt, nullable=False),
        sa.Column("module", UnsignedInt, nullable=False),
        sa.Column("need", UnsignedInt, nullable=False),
        sa.Column("have", UnsignedInt, nullable=False),
        sa.PrimaryKeyConstraint("report_id", "phase", "module"),
        **TABLE_ARGS,
    )


def downgrade() -> None:
    for table in ("report_prereq", "report_facts", "fact_set_item", "fact_set", "fact_string"):
        op.drop_table(table)
