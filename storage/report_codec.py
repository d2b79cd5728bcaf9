"""How a v3 document is kept on disk: large repeated blocks once, the rest compressed.

The bulk of a text report is the tester's ``perl -V`` and environment sections, repeated
verbatim in every report a tester sends. :func:`pack` cuts every long string of the
document into blocks at content-defined line boundaries (so that the same section cuts
the same way whatever comes before it), keeps each block of a useful size once, keyed by
its SHA-256 (``report_block``), and compresses the rest of the document (with a
preset dictionary of the usual report boilerplate) into ``test_report.report_z``.
:func:`unpack` puts the document back together. Pure: the queries are in
``storage/reports.py``.

``report_z``: a format byte, a 2-byte block count ``n``, ``n`` raw 32-byte SHA-256
digests, then the compressed JSON ``{"d": document with the long strings emptied, "s":
[[path, parts], ...]}`` where a part is a string (kept inline) or an integer index into
the digests. Format 2 (written now) compresses with zstd, format 1 (read still) with
zlib, both with the preset dictionary ``ZDICT_V1``. A block's body says how it is
compressed (a zstd frame or a zlib stream), so a block stored by either format serves both.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import zlib
from pathlib import Path

import zstandard

from schemas import fast_json

FORMAT_V1 = 1
"""zlib (level 6), the first format."""
FORMAT_V2 = 2
"""zstd (level ``ZSTD_LEVEL``): about five times less CPU than zlib for the same size."""
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
"""zlib level of format 1 (kept to write format-1 data in tests)."""
ZSTD_LEVEL = 3
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

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
_ZSTD_DICT = zstandard.ZstdCompressionDict(ZDICT_V1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_ZSTD = threading.local()
"""zstd (de)compressors are not thread-safe and cost to build (the dictionary is digested
once per object): one of each per thread."""


def _zlib_compress(data: bytes) -> bytes:
    compressor = _PRIMED.copy()
    return compressor.compress(data) + compressor.flush()


def _compress(data: bytes) -> bytes:
    compressor = getattr(_ZSTD, "compressor", None)
    if compressor is None:
        compressor = _ZSTD.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=_ZSTD_DICT)
    return compressor.compress(data)


def _decompress(data: bytes) -> bytes:
    """Either kind of compressed data: a zstd frame or a zlib stream."""
    if data[:4] == ZSTD_MAGIC:
        decompressor = getattr(_ZSTD, "decompressor", None)
        if decompressor is None:
            decompressor = _ZSTD.decompressor = zstandard.ZstdDecompressor(dict_data=_ZSTD_DICT)
        return decompressor.decompress(data)
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


def _long_strings(doc) -> list[tuple[tuple, str]]:
    """``(path, string)`` of every string of the document at least ``SPLIT_MIN_LENGTH`` long."""
    found = []
    stack: list[tuple[tuple, object]] = [((), doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in items:
            if isinstance(value, str):
                if len(value) >= SPLIT_MIN_LENGTH:
                    found.append(((*path, key), value))
            elif isinstance(value, dict | list):
                stack.append(((*path, key), value))
    return found


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


class RecentDigests:
    """A bounded set of digests: two generations of sets, the older one dropped when the
    newer one is full, so what was met or looked up lately stays in the set."""

    def __init__(self, limit: int):
        self.limit = limit
        self.recent: set[bytes] = set()
        self.older: set[bytes] = set()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.recent or digest in self.older

    def __len__(self) -> int:
        return len(self.recent) + len(self.older)

    def add(self, digest: bytes) -> None:
        if len(self.recent) >= self.limit // 2:
            self.older, self.recent = self.recent, set()
        self.recent.add(digest)

    def update(self, digests) -> None:
        for digest in digests:
            self.add(digest)

    def seen_before(self, digest: bytes) -> bool:
        """Whether ``digest`` is in the set; adds it (the sightings of :func:`pack`: a
        chunk forgotten is only kept inline once more)."""
        if digest in self:
            return True
        self.add(digest)
        return False


def _parts(data: bytes, pieces: list) -> list:
    """A string's parts: block indexes as they are, each run of adjacent inline byte
    ranges ``(start, end)`` decoded as one string."""
    parts: list = []
    run_start = None
    run_end = 0
    for piece in pieces:
        if isinstance(piece, int):
            if run_start is not None:
                parts.append(data[run_start:run_end].decode("utf-8", "surrogatepass"))
                run_start = None
            parts.append(piece)
        else:
            if run_start is None:
                run_start = piece[0]
            run_end = piece[1]
    if run_start is not None:
        parts.append(data[run_start:run_end].decode("utf-8", "surrogatepass"))
    return parts


def pack(
    doc: dict,
    cache=None,
    sightings: RecentDigests | None = None,
    stored=frozenset(),
    version: int = FORMAT_V2,
) -> tuple[bytes, dict[bytes, bytes]]:
    """``(report_z, {digest: compressed block})`` for a document; ``cache`` (a mapping of
    digest to compressed block) spares compressing a block seen before. A block whose
    digest is in ``stored`` (known to be in ``report_block`` already) is referred to
    without a body: it is neither compressed again nor returned.

    With ``sightings``, a chunk becomes a block only when it is met again (or is in
    ``cache``): the first time it stays inline, compressed with the rest. Most large
    chunks of a report that never repeat (its test output, a section with a PID in it)
    then cost neither a ``report_block`` row nor a compression of their own. ``version``
    chooses the format (``FORMAT_V1`` only to test that old rows still read)."""
    compress = _compress if version == FORMAT_V2 else _zlib_compress
    digests: list[bytes] = []
    index_of: dict[bytes, int] = {}
    blocks: dict[bytes, bytes] = {}
    splits = []
    skeleton = doc
    for path, text in _long_strings(doc):
        pieces: list = []  # block indexes, and (start, end) byte ranges kept inline
        data = text.encode("utf-8", "surrogatepass")
        for a, b in _cuts(data):
            if b - a < MIN_BLOCK:
                pieces.append((a, b))
                continue
            raw = data[a:b]
            digest = hashlib.sha256(raw).digest()
            if digest not in index_of:
                if digest in stored:
                    pass
                elif (cached := cache.get(digest) if cache is not None else None) is not None:
                    blocks[digest] = cached
                elif sightings is None or sightings.seen_before(digest):
                    blocks[digest] = compress(raw)
                else:
                    pieces.append((a, b))
                    continue
                index_of[digest] = len(digests)
                digests.append(digest)
            pieces.append(index_of[digest])
        if any(isinstance(p, int) for p in pieces):  # else the string stays in the skeleton whole
            skeleton = _copy_path(skeleton, path)
            _set(skeleton, path, "")
            splits.append([list(path), _parts(data, pieces)])
    body = fast_json.dumps({"d": skeleton, "s": splits})
    head = bytes([version]) + struct.pack(">H", len(digests)) + b"".join(digests)
    return head + compress(body), blocks


def header_length(report_z: bytes) -> int:
    """Bytes of the format byte, the count and the digests at the start of ``report_z``."""
    (count,) = struct.unpack(">H", report_z[1:3])
    return 3 + 32 * count


def block_digests(report_z: bytes) -> list[bytes]:
    """The block digests a packed document refers to."""
    if report_z[0] not in (FORMAT_V1, FORMAT_V2):
        raise ValueError(f"unknown report format {report_z[0]}")
    return [report_z[start : start + 32] for start in range(3, header_length(report_z), 32)]


def unpack(report_z: bytes, blocks: dict, compressed: bool = True) -> dict:
    """The document back from ``report_z`` and its blocks (``{digest: compressed block}``,
    or ``{digest: text}`` with ``compressed=False``)."""
    digests = block_digests(report_z)
    body = fast_json.loads(_decompress(report_z[3 + 32 * len(digests) :]))
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
