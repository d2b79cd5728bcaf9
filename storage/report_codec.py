"""How a v3 document is kept on disk: large repeated blocks once, the rest compressed.

The bulk of a text report is the tester's ``perl -V`` and environment sections, repeated
verbatim in every report a tester sends. :func:`pack` cuts every long string of the
document into blocks at content-defined line boundaries (so that the same section cuts
the same way whatever comes before it), keeps each block of a useful size once, keyed by
its SHA-256 (``report_block``), and zlib-compresses the rest of the document (with a
preset dictionary of the usual report boilerplate) into ``test_report.report_z``.
:func:`unpack` puts the document back together. Pure: the queries are in
``storage/reports.py``.

Format v1 of ``report_z``: ``b"\\x01"``, a 2-byte block count ``n``, ``n`` raw 32-byte
SHA-256 digests, then zlib (preset dictionary ``ZDICT_V1``) of the JSON
``{"d": document with the long strings emptied, "s": [[path, parts], ...]}`` where a part
is a string (kept inline) or an integer index into the digests.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

FORMAT_V1 = 1
ZDICT_V1 = (Path(__file__).parent / "report_zdict_v1.txt").read_bytes()[-32768:]
"""zlib's preset dictionary for format 1 (its last 32 KiB are used). Never edit: a new
dictionary is a new format number, so that stored reports stay readable."""

SPLIT_MIN_LENGTH = 2048
"""Strings shorter than this are left in the document (compressed with it)."""
MIN_BLOCK = 768
"""A chunk shorter than this stays inline: its key and row would cost more than it saves."""
MAX_CHUNK = 16384
CUT_MASK = 0x7
"""A line whose CRC-32 has these bits clear ends a chunk (about one line in 8)."""
LEVEL = 6

SECTION_STARTS = (
    "------------------------------",
    "Summary of my perl5",
    "Characteristics of this binary",
    "Environment variables:",
    "Perl special variables",
    "Perl module toolchain versions",
    "Prerequisite modules loaded:",
    "  %ENV:",
    "  @INC:",
    "PROGRAM OUTPUT",
    "ENVIRONMENT AND OTHER CONTEXT",
    "PREREQUISITES",
)
_SECTION_STARTS = tuple(prefix.encode() for prefix in SECTION_STARTS)


_PRIMED = zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT_V1)
"""A compressor with the dictionary loaded, copied for each use (loading it costs more)."""


def _compress(data: bytes) -> bytes:
    compressor = _PRIMED.copy()
    return compressor.compress(data) + compressor.flush()


def _decompress(data: bytes) -> bytes:
    decompressor = zlib.decompressobj(zlib.MAX_WBITS, ZDICT_V1)
    return decompressor.decompress(data) + decompressor.flush()


def chunks(text: str) -> list[str]:
    """Cut ``text`` into chunks at line ends chosen by content: before a section header,
    or after a line whose hash says so once the chunk is long enough."""
    data = text.encode("utf-8", "surrogatepass")
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in _cuts(data)]


def _cuts(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` byte offsets of the chunks of UTF-8 ``data`` (a line break never
    falls inside a multi-byte character, so every chunk is valid UTF-8)."""
    out = []
    start = pos = size = 0
    crc32 = zlib.crc32
    for line in data.splitlines(keepends=True):
        if size >= MIN_BLOCK and line.startswith(_SECTION_STARTS):
            out.append((start, pos))
            start, size = pos, 0
        length = len(line)
        pos += length
        size += length
        if size >= MAX_CHUNK or (size >= MIN_BLOCK and not crc32(line) & CUT_MASK):
            out.append((start, pos))
            start, size = pos, 0
    if start < len(data):
        out.append((start, len(data)))
    return out


def _long_strings(node, path: tuple):
    if isinstance(node, str):
        if len(node) >= SPLIT_MIN_LENGTH:
            yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _long_strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _long_strings(value, (*path, index))


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _copy_path(doc, path):
    """Shallow-copy the containers along ``path`` so the caller's document is left alone."""
    root = dict(doc) if isinstance(doc, dict) else list(doc)
    node = root
    for key in path[:-1]:
        child = node[key]
        child = dict(child) if isinstance(child, dict) else list(child)
        node[key] = child
        node = child
    return root


def pack(doc: dict, cache=None) -> tuple[bytes, dict[bytes, bytes]]:
    """``(report_z, {digest: compressed block})`` for a document; ``cache`` (a mapping of
    digest to compressed block) spares compressing a block seen before."""
    digests: list[bytes] = []
    index_of: dict[bytes, int] = {}
    blocks: dict[bytes, bytes] = {}
    splits = []
    skeleton = doc
    for path, text in list(_long_strings(doc, ())):
        parts: list = []
        data = text.encode("utf-8", "surrogatepass")
        for a, b in _cuts(data):
            if b - a < MIN_BLOCK:
                chunk = data[a:b].decode("utf-8", "surrogatepass")
                if parts and isinstance(parts[-1], str):
                    parts[-1] += chunk
                else:
                    parts.append(chunk)
                continue
            raw = data[a:b]
            digest = hashlib.sha256(raw).digest()
            if digest not in index_of:
                index_of[digest] = len(digests)
                digests.append(digest)
                cached = cache.get(digest) if cache is not None else None
                blocks[digest] = cached if cached is not None else _compress(raw)
            parts.append(index_of[digest])
        if any(isinstance(p, int) for p in parts):
            skeleton = _copy_path(skeleton, path)
            _set(skeleton, path, "")
            splits.append([list(path), parts])
    body = json.dumps({"d": skeleton, "s": splits}, ensure_ascii=False, separators=(",", ":"))
    head = bytes([FORMAT_V1]) + struct.pack(">H", len(digests)) + b"".join(digests)
    return head + _compress(body.encode("utf-8", "surrogatepass")), blocks


def block_digests(report_z: bytes) -> list[bytes]:
    """The block digests a packed document refers to."""
    if report_z[0] != FORMAT_V1:
        raise ValueError(f"unknown report format {report_z[0]}")
    (count,) = struct.unpack(">H", report_z[1:3])
    return [report_z[3 + 32 * i : 35 + 32 * i] for i in range(count)]


def unpack(report_z: bytes, blocks: dict, compressed: bool = True) -> dict:
    """The document back from ``report_z`` and its blocks (``{digest: compressed block}``,
    or ``{digest: text}`` with ``compressed=False``)."""
    digests = block_digests(report_z)
    body = json.loads(_decompress(report_z[3 + 32 * len(digests) :]).decode("utf-8", "surrogatepass"))
    doc = body["d"]
    texts: dict[int, str] = {}
    for path, parts in body["s"]:
        pieces = []
        for part in parts:
            if isinstance(part, int):
                if part not in texts:
                    block = blocks[digests[part]]
                    texts[part] = block_text(block) if compressed else block
                pieces.append(texts[part])
            else:
                pieces.append(part)
        _set(doc, path, "".join(pieces))
    return doc


def block_text(compressed: bytes) -> str:
    return _decompress(compressed).decode("utf-8", "surrogatepass")
