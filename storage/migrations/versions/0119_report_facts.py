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
Blob = sa.LargeBinary().with_variant(mysql.BLOB(), "mysql")
LongText = sa.Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql")

REPORT_PREREQ_VIEW = """
CREATE VIEW report_prereq AS
SELECT f.report_id AS report_id, i.phase AS phase, i.module AS module, i.need AS need, i.have AS have
FROM report_facts f JOIN prereq_set_item i ON i.set_id = f.prereq_set
"""


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
        sa.Column("pairs", Blob, nullable=False),
        **TABLE_ARGS,
    )
    op.create_table(
        "prereq_set",
        sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
        sa.Column("digest", Digest16, nullable=False, unique=True),
        **TABLE_ARGS,
    )
    op.create_table(
        "prereq_set_item",
        sa.Column("set_id", UnsignedInt, nullable=False),
        sa.Column("phase", UnsignedInt, nullable=False),
        sa.Column("module", UnsignedInt, nullable=False),
        sa.Column("need", UnsignedInt, nullable=False),
        sa.Column("have", UnsignedInt, nullable=False),
        sa.PrimaryKeyConstraint("set_id", "phase", "module"),
        **TABLE_ARGS,
    )
    op.create_table(
        "report_facts",
        sa.Column("report_id", ReportId, primary_key=True, autoincrement=False),
        sa.Column("parser", sa.SmallInteger, nullable=False),
        sa.Column("user_agent", UnsignedInt, nullable=True),
        sa.Column("build_offset", sa.Integer, nullable=True),
        sa.Column("prereq_set", UnsignedInt, nullable=True),
        sa.Column("config_set", UnsignedInt, nullable=True),
        sa.Column("env_set", UnsignedInt, nullable=True),
        sa.Column("env_spans", Blob, nullable=True),
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
    op.execute(REPORT_PREREQ_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW report_prereq")
    for table in ("report_facts", "prereq_set_item", "prereq_set", "fact_set", "fact_string"):
        op.drop_table(table)
