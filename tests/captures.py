"""Read the requests recorded from the real Perl client (``tests/captures/``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CAPTURES = Path(__file__).parent / "captures"
PROFILE_GUID = "b0aabbe1-da37-4e3c-a71c-9349b2b5d6cc"
PROFILE_SECRET = "s3cr3t"


@dataclass
class Recorded:
    """One recorded request: its raw bytes, and the parts a test client needs."""

    scenario: str
    number: int
    method: str
    path: str
    headers: list
    body: bytes
    raw: bytes

    @property
    def header_dict(self) -> dict:
        return {name: value for name, value in self.headers}


def load(scenario: str) -> list[Recorded]:
    """Every request of a scenario, in the order the client sent them."""
    folder = CAPTURES / scenario
    recorded = []
    for meta_path in sorted(folder.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        raw = (folder / meta_path.name.replace(".meta.json", ".http")).read_bytes()
        _head, _, body = raw.partition(b"\r\n\r\n")
        if not _:
            _head, _, body = raw.partition(b"\n\n")
        recorded.append(Recorded(scenario, meta["n"], meta["method"], meta["path"], meta["headers"], body, raw))
    return recorded


def scenarios() -> list[str]:
    return sorted(p.name for p in CAPTURES.iterdir() if p.is_dir())


def submissions() -> list[Recorded]:
    """Every recorded submit request of every scenario."""
    return [r for s in scenarios() for r in load(s) if "/submit/" in r.path]
