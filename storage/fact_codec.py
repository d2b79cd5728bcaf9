"""How the report facts pack lists of ``fact_string`` ids into one column: little-endian
uint32s, 8 bytes a (name, value) pair (``fact_set.pairs``), 12 bytes a (name, start, end)
triple (``report_facts.env_spans``)."""

from __future__ import annotations

import struct


def pack_pairs(pairs: list[tuple[int, int]]) -> bytes:
    """``(name id, value id)`` pairs as little-endian uint32s (8 bytes a pair)."""
    return struct.pack(f"<{2 * len(pairs)}I", *(i for pair in pairs for i in pair))


def unpack_pairs(items: bytes) -> list[tuple[int, int]]:
    values = struct.unpack(f"<{len(items) // 4}I", items)
    return list(zip(values[0::2], values[1::2], strict=True))


def pack_triples(triples: list[tuple[int, int, int]]) -> bytes:
    return struct.pack(f"<{3 * len(triples)}I", *(i for triple in triples for i in triple))


def unpack_triples(packed: bytes) -> list[tuple[int, int, int]]:
    values = struct.unpack(f"<{len(packed) // 4}I", packed)
    return list(zip(values[0::3], values[1::3], values[2::3], strict=True))
