"""JSON through orjson where it can, the standard library where orjson refuses.

orjson parses and writes JSON several times faster than the standard library, which
matters where every report goes through JSON (the legacy migration, packing and reading
stored documents). It refuses a few things the standard library accepts: lone UTF-16
surrogates (``"\\ud800"``, which old clients do send), ``NaN``/``Infinity``, numbers
out of a double's range and, when writing, integers beyond 64 bits. Those rare inputs
take the standard library's path, so the answer is the same either way; one difference
is kept: orjson reads an integer beyond 64 bits as a float.
"""

from __future__ import annotations

import json

import orjson


def loads(data: bytes | str):
    """Parse JSON text (``str``, or UTF-8 ``bytes`` where encoded surrogates are allowed)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value) -> bytes:
    """Compact JSON as UTF-8 bytes, non-ASCII characters unescaped; lone surrogates are
    written as their UTF-8-style bytes (``surrogatepass``), which :func:`loads` reads back."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
