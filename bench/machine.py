"""A machine-speed yardstick printed by the benchmarks beside their figures.

The project's VM is shared: the same code has measured 2.5 ms of intake CPU per
submission on one day and 6.4 ms on another. Two fixed pieces of single-core Python work,
timed before a run, say which kind of day a run's figures come from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "legacy-view-report-json-sample.json"


def _best_of(runs: int, work) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def yardstick() -> str:
    """``python loop N ns/iteration, json.loads of a 37 KB report N µs`` (best of 5)."""
    text = SAMPLE.read_text()
    loop = _best_of(5, lambda: sum(i * i for i in range(1_000_000))) / 1_000_000
    loads = _best_of(5, lambda: [json.loads(text) for _ in range(200)]) / 200
    return (
        f"python loop {loop * 1e9:.0f} ns/iteration, json.loads of a {len(text) // 1024} KB report {loads * 1e6:.0f} µs"
    )
