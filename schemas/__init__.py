"""Pure functions and marshmallow schemas: decode the Metabase envelope, validate,
translate to the v3 document, and the rules that derive the summary fields.

No I/O, no Flask, no database: everything here takes and returns plain data.
"""
