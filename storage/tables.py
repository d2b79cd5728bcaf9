"""The tables, declared once. Alembic migrations in ``storage/migrations`` create them.

Upstream table and column names and meanings are kept (public consumers, the viewer
and the migration rely on them); columns and indexes our design needs are added and
marked as such.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

MYSQL_TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}

LongText = sa.Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql")
"""Real UTF-8, 4-byte characters included (MariaDB's JSON type is LONGTEXT too)."""

UnsignedInt = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql")
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
Digest = sa.LargeBinary(32).with_variant(mysql.BINARY(32), "mysql")
Guid = sa.String(36)

REPORT_STATES = ("pending", "done", "skipped", "failed")
"""``test_report.state``: waiting for processing, counted, counted nowhere (e.g. Perl 6), given up on."""

GRADES = ("pass", "fail", "unknown", "na")

test_report = sa.Table(
    "test_report",
    metadata,
    # Ours: an auto-increment key, the cheap size indicator the seed asked for.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("guid", Guid, nullable=False, unique=True),
    sa.Column("created", sa.DateTime, nullable=False, doc="Server receipt time, UTC."),
    sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
    sa.Column("language", sa.String(16), nullable=False, doc="'Perl 5' or 'Perl 6'."),
    sa.Column("dist", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("grade", sa.String(8), nullable=False),
    sa.Column("perl", sa.String(255), nullable=False),
    sa.Column("osname", sa.String(255), nullable=False),
    sa.Column("archname", sa.String(255), nullable=False, server_default=""),
    sa.Column("reporter", sa.String(255), nullable=False, server_default="", doc="Reporter's name."),
    sa.Column("reporter_email", sa.String(255), nullable=True),
    sa.Column("creator", sa.String(64), nullable=True, doc="metabase:user:<guid> of the submitting profile."),
    sa.Column("distfile", sa.String(255), nullable=True, doc="AUTHOR/FILE from the submission's resource."),
    sa.Column("submission_sha256", sa.String(64), nullable=False, doc="Hash of the canonical submission."),
    sa.Column("report", LongText, nullable=False, doc="The v3 document as JSON (empty when packed in report_z)."),
    # Ours: the document packed by storage/report_codec (blocks in report_block).
    sa.Column("report_z", LongBlob, nullable=True, doc="Packed document; NULL for plain JSON rows."),
    sa.Column("state_changed", sa.DateTime, nullable=True),
    sa.Index("test_report_state_created", "state", "created"),
    sa.Index("test_report_dist_version", "dist", "version"),
    sa.Index("test_report_created", "created"),
    sa.Index("test_report_language_id", "language", "id"),
    **MYSQL_TABLE_ARGS,
)

metabase_user = sa.Table(
    "metabase_user",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource", sa.String(50), nullable=False, unique=True),
    sa.Column("fullname", sa.String(255), nullable=False),
    sa.Column("email", sa.String(255), nullable=True),
    # Ours: a salted SHA-256 of the profile's secret; NULL for migrated profiles,
    # which adopt the first secret they present.
    sa.Column("secret_salt", sa.String(32), nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=True),
    **MYSQL_TABLE_ARGS,
)

perl_version = sa.Table(
    "perl_version",
    metadata,
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("perl", sa.String(32), nullable=True),
    sa.Column("patch", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("devel", sa.SmallInteger, nullable=False, server_default="0"),
    **MYSQL_TABLE_ARGS,
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("uploadid", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("dist", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("released", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("dist", "version", name="dist_version"),
    sa.Index("uploads_author", "author"),
    sa.Index("uploads_released", "released"),
    **MYSQL_TABLE_ARGS,
)

cpanstats = sa.Table(
    "cpanstats",
    metadata,
    sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("guid", Guid, nullable=False, unique=True),
    sa.Column("state", sa.Enum(*GRADES, name="cpanstats_state"), nullable=False),
    sa.Column("postdate", sa.Integer, nullable=False),
    sa.Column("tester", sa.String(255), nullable=False),
    sa.Column("dist", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("platform", sa.String(255), nullable=False),
    sa.Column("perl", sa.String(255), sa.ForeignKey("perl_version.version"), nullable=False),
    sa.Column("osname", sa.String(255), nullable=False),
    sa.Column("osvers", sa.String(255), nullable=False),
    sa.Column("fulldate", sa.String(32), nullable=False),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("uploadid", UnsignedInt, sa.ForeignKey("uploads.uploadid"), nullable=False),
    sa.Index("cpanstats_idx_perl", "perl"),
    sa.Index("cpanstats_idx_uploadid", "uploadid"),
    sa.Index("cpanstats_dist_version", "dist", "version", "fulldate"),  # fulldate ours: ?limit= in date order
    sa.Index("cpanstats_fulldate", "fulldate"),
    sa.Index("cpanstats_osname", "osname"),  # ours: the read API's /v3/summary?osname=
    sa.Index("cpanstats_dist_fulldate", "dist", "fulldate"),  # ours: /v3/summary/<dist>?since=&limit=
    **MYSQL_TABLE_ARGS,
)


def _release_columns():
    return [
        sa.Column("dist", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("guid", Guid, nullable=False),
        sa.Column("oncpan", sa.Integer, nullable=False),
        sa.Column("distmat", sa.Integer, nullable=False),
        sa.Column("perlmat", sa.Integer, nullable=False),
        sa.Column("patched", sa.Integer, nullable=False),
        sa.Column("pass", sa.Integer, nullable=False),
        sa.Column("fail", sa.Integer, nullable=False),
        sa.Column("na", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("uploadid", UnsignedInt, sa.ForeignKey("uploads.uploadid"), nullable=False),
    ]


release_data = sa.Table(
    "release_data",
    metadata,
    *_release_columns(),
    sa.PrimaryKeyConstraint("id", "guid"),
    sa.Index("release_data_idx_uploadid", "uploadid"),
    sa.Index("release_data_dist_version", "dist", "version"),
    **MYSQL_TABLE_ARGS,
)

release_summary = sa.Table(
    "release_summary",
    metadata,
    *_release_columns(),
    sa.UniqueConstraint("dist", "version", "oncpan", "distmat", "perlmat", "patched", name="summary"),
    sa.Index("release_summary_idx_uploadid", "uploadid"),
    sa.Index("release_summary_idx_guid", "guid"),
    **MYSQL_TABLE_ARGS,
)

# Ours: the progress and the rejected rows of the legacy Metabase cache migration
# (scripts/migrate_legacy.py), so that an interrupted run goes on where it stopped.
legacy_migration = sa.Table(
    "legacy_migration",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True, doc="'reports:<lo>-<hi>', 'verify'..."),
    sa.Column("last_guid", Guid, nullable=True, doc="Highest legacy GUID of the range already handled."),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("migrated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("updated", sa.DateTime, nullable=False),
    **MYSQL_TABLE_ARGS,
)

# Ours: large blocks of report documents (perl -V, environment...) kept once, by SHA-256;
# test_report.report_z refers to them (storage/report_codec.py).
report_block = sa.Table(
    "report_block",
    metadata,
    sa.Column("digest", Digest, primary_key=True, doc="SHA-256 of the block's UTF-8 text."),
    sa.Column("body", LongBlob, nullable=False, doc="The block, zlib-compressed."),
    **MYSQL_TABLE_ARGS,
)

legacy_migration_error = sa.Table(
    "legacy_migration_error",
    metadata,
    sa.Column("guid", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    **MYSQL_TABLE_ARGS,
)

# Ours: facts parsed from each report's text (schemas/reportparse), written by the workers
# and the backfill (storage/report_facts.py); derived data, rebuilt by parsing again.
# Every string (module names, versions, variable names and values...) is kept once in
# fact_string. A report's sets of name/value pairs (environment variables, special
# variables, toolchain, perl -V fields, failed test files) are kept once each in fact_set,
# and its list of prerequisites once in prereq_set/prereq_set_item: a tester's repeated
# environment, or a prerequisite list met before, costs a report 4 bytes. The view
# report_prereq (migration 0119) lists (report_id, phase, module, need, have) ids.
Digest16 = sa.LargeBinary(16).with_variant(mysql.BINARY(16), "mysql")
ReportId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Blob = sa.LargeBinary().with_variant(mysql.BLOB(), "mysql")

fact_string = sa.Table(
    "fact_string",
    metadata,
    sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("digest", Digest16, nullable=False, unique=True, doc="MD5 of the UTF-8 value (the lookup key)."),
    sa.Column("value", LongText, nullable=False),
    **MYSQL_TABLE_ARGS,
)

fact_set = sa.Table(
    "fact_set",
    metadata,
    sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("digest", Digest16, nullable=False, unique=True, doc="MD5 of the set's sorted pairs."),
    sa.Column("pairs", Blob, nullable=False, doc="(name, value) fact_string ids, little-endian uint32 pairs."),
    **MYSQL_TABLE_ARGS,
)

prereq_set = sa.Table(
    "prereq_set",
    metadata,
    sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("digest", Digest16, nullable=False, unique=True, doc="MD5 of the sorted prerequisites."),
    **MYSQL_TABLE_ARGS,
)

prereq_set_item = sa.Table(
    "prereq_set_item",
    metadata,
    sa.Column("set_id", UnsignedInt, nullable=False),
    sa.Column("phase", UnsignedInt, nullable=False, doc="fact_string id: 'runtime', 'build'..."),
    sa.Column("module", UnsignedInt, nullable=False, doc="fact_string id of the module name."),
    sa.Column("need", UnsignedInt, nullable=False, doc="fact_string id of the version needed."),
    sa.Column("have", UnsignedInt, nullable=False, doc="fact_string id of the version installed ('n/a': none)."),
    sa.PrimaryKeyConstraint("set_id", "phase", "module"),
    **MYSQL_TABLE_ARGS,
)

report_facts = sa.Table(
    "report_facts",
    metadata,
    sa.Column("report_id", ReportId, primary_key=True, autoincrement=False, doc="test_report.id"),
    sa.Column("parser", sa.SmallInteger, nullable=False, doc="schemas.reportparse.PARSER_VERSION that wrote the row."),
    sa.Column("user_agent", UnsignedInt, nullable=True, doc="fact_string id: 'CPAN::Reporter 1.2020'."),
    sa.Column("build_offset", sa.Integer, nullable=True, doc="Where perl -V starts in the report text."),
    sa.Column("prereq_set", UnsignedInt, nullable=True, doc="prereq_set: the prerequisites."),
    sa.Column("config_set", UnsignedInt, nullable=True, doc="fact_set: the key perl -V fields."),
    sa.Column("env_set", UnsignedInt, nullable=True, doc="fact_set: environment variables that repeat."),
    sa.Column(
        "env_spans",
        Blob,
        nullable=True,
        doc="Environment variables read from the report text: (name id, start, end) uint32 triples.",
    ),
    sa.Column("perl_set", UnsignedInt, nullable=True, doc="fact_set: Perl special variables."),
    sa.Column("toolchain_set", UnsignedInt, nullable=True, doc="fact_set: toolchain module versions."),
    sa.Column("failed_set", UnsignedInt, nullable=True, doc="fact_set: failed test file -> failed test numbers."),
    sa.Column("tests", sa.Integer, nullable=True),
    sa.Column("failures", sa.Integer, nullable=True),
    sa.Column("skipped", sa.Integer, nullable=True),
    sa.Column("todo_pass", sa.Integer, nullable=True),
    sa.Column("todo_fail", sa.Integer, nullable=True),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column(
        "counted",
        sa.Boolean,
        nullable=False,
        server_default=sa.false(),
        doc="Whether the report is counted in release_factor_count (migration 0123).",
    ),
    **MYSQL_TABLE_ARGS,
)

# Ours (migration 0123): the failure analysis's counts, kept up to date by the enrichment
# (storage/factor_counts.py) so that analysing a release reads a few thousand count rows
# instead of expanding every report's facts. A release is (dist, version) compared as
# test_report compares them (the same collation), interned once in analysis_release.
analysis_release = sa.Table(
    "analysis_release",
    metadata,
    sa.Column("id", UnsignedInt, primary_key=True, autoincrement=True),
    sa.Column("dist", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.UniqueConstraint("dist", "version", name="analysis_release_dist_version"),
    **MYSQL_TABLE_ARGS,
)

release_factor_count = sa.Table(
    "release_factor_count",
    metadata,
    sa.Column("release_id", UnsignedInt, nullable=False, doc="analysis_release.id"),
    sa.Column("kind", sa.SmallInteger, nullable=False, doc="storage.release_factors.Kind: perl, prereq..."),
    sa.Column("name_id", UnsignedInt, nullable=False, doc="fact_string id: the module, flag or variable; 0: none."),
    sa.Column("value_id", UnsignedInt, nullable=False, doc="fact_string id of the value; 0 in the totals row."),
    sa.Column("fails", sa.Integer, nullable=False, doc="FAIL reports counted with this value."),
    sa.Column("passes", sa.Integer, nullable=False, doc="PASS reports counted with this value."),
    sa.Column("others", sa.Integer, nullable=False, doc="Reports of other grades (the totals row only)."),
    sa.PrimaryKeyConstraint("release_id", "kind", "name_id", "value_id"),
    **MYSQL_TABLE_ARGS,
)
