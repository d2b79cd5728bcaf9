"""JSON through orjson where it can, the standard library where orjson refuses.

orjson parses and writes JSON several times faster than the standard library, which
matters where every report goes through JSON (the legacy migration, packing and reading
stored documents). It refuses a few things the standard library accepts: lone UTF-16
surrogates (``"\\ud800"``, which old clients do send), ``NaN``/``Infinity``, numbers
out of a double's range and, when writing, integers beyond 64 bits. Those rare inputs
take the standard library's path, so the answer is the same either way. orjson does not
refuse an integer beyond 64 bits when reading, it reads it as a float: so a result with
a float that large is read again by the standard library (a scan of the parsed values
costs far less than scanning the text for long digit runs).
"""

from __future__ import annotations

import json

import orjson

HUGE = 9.2e18
"""Below 2**63: orjson reads integer literals from -2**63 to 2**64 - 1 exactly, and any
beyond them as floats at least this large; a float literal that large reads the same
through the standard library."""


def loads(data: bytes | str):
    """Parse JSON text (``str``, or UTF-8 ``bytes`` where encoded surrogates are allowed)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    return json.loads(data) if _has_huge_float(value) else value


def dumps(value) -> bytes:
    """Compact JSON as UTF-8 bytes, non-ASCII characters unescaped; lone surrogates are
    written as their UTF-8-style bytes (``surrogatepass``), which :func:`loads` reads back."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _has_huge_float(value) -> bool:
    """Whether a parsed value holds a float of magnitude :data:`HUGE` or more."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            node = node.values()
        elif kind is not list:
            node = (node,)
        for item in node:
            kind = type(item)
            if kind is float:
                if not -HUGE < item < HUGE:
                    return True
            elif kind is dict or kind is list:
                stack.append(item)
    return False
