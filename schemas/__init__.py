"""Pure functions and marshmallow schemas: decode the Metabase envelope, validate,
translate to the v3 document, and the rules that derive the summary fields.

No I/O, no Flask, no database: everything here takes and returns plain data.

Beside the schemas live the other domain rules that need no I/O, because they work on the
same plain data the schemas produce and are tested the same way (property tests on
untrusted input): distribution names (``distname``, a port of CPAN::DistnameInfo), text
repair (``text``), the legacy Metabase rows (``legacy``), the summary rules of processing
(``summary_rules``), module versions, the report-text parser (``reportparse``) and the
failure statistics (``failure_analysis``). Keeping them here lets ``storage`` and the
pipeline stages share them without importing each other.
"""
