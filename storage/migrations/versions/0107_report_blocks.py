"""report blocks: content-addressed blocks of report documents and the packed document column

Revision ID: 0107_report_blocks
Revises: 0106_legacy_migration
Create Date: 2026-11-30 00:10:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0107_report_blocks"
down_revision = "0106_legacy_migration"
branch_labels = None
depends_on = None

LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
Digest = sa.LargeBinary(32).with_variant(mysql.BINARY(32), "mysql")


def upgrade() -> None:
    op.create_table(
        "report_block",
        sa.Column("digest", Digest, primary_key=True),
        sa.Column("body", LongBlob, nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    with op.batch_alter_table("test_report") as batch:
        batch.add_column(sa.Column("report_z", LongBlob, nullable=True))


def downgrade() -> None:
    # Packed rows get their documents back as plain JSON before the column goes.
    import json

    from storage import report_codec

    conn = op.get_bind()
    report = sa.table("test_report", sa.column("id"), sa.column("report"), sa.column("report_z", LongBlob))
    block = sa.table("report_block", sa.column("digest", Digest), sa.column("body", LongBlob))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(report.c.id, report.c.report_z)
            .where(report.c.report_z.is_not(None), report.c.id > last)
            .order_by(report.c.id)
            .limit(500)
        ).all()
        if not rows:
            break
        for row_id, packed in rows:
            packed = bytes(packed)
            digests = report_codec.block_digests(packed)
            blocks = {bytes(d): bytes(b) for d, b in conn.execute(sa.select(block).where(block.c.digest.in_(digests)))}
            doc = report_codec.unpack(packed, blocks)
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            conn.execute(report.update().where(report.c.id == row_id).values(report=text, report_z=None))
            last = row_id
    with op.batch_alter_table("test_report") as batch:
        batch.drop_column("report_z")
    op.drop_table("report_block")
