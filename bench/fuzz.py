"""Fuzz budget: 10,000 mutated real captures against the submission app on MariaDB + Redis.

    .venv/bin/python -m bench.fuzz [--cases 10000] [--seed 20] [--limit BYTES]

The cases and the checks are those of ``tests/test_fuzz.py`` (``tests/fuzz_inputs.py``,
``tests/fuzz_harness.py``), with a bigger budget and the real body limit (15 MiB, lowered to
fit max_allowed_packet as in production). Prints the per-stage counts, the statuses, the
mutations drawn and every broken guarantee; exits 1 if there is one. Uses a throwaway
MariaDB database and Redis DB ``BENCH_REDIS_DB`` (else ``CPT_TEST_REDIS_DB``, else 11), flushed:
choose one nobody else uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from app import create_app  # noqa: E402
from bench.machine import yardstick  # noqa: E402
from tests import backends  # noqa: E402
from tests.fuzz_harness import FuzzTarget, fuzz  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_REDIS_DB") or os.environ.get("CPT_TEST_REDIS_DB") or "11")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="body limit (default: the app's own)")
    args = parser.parse_args()
    print(f"yardstick: {yardstick()}", flush=True)
    backend = backends.mariadb_backend()
    if backend is None:
        print("MariaDB and Redis on 127.0.0.1 are needed", file=sys.stderr)
        return 2
    backend = dataclasses.replace(backend, redis_url=f"redis://127.0.0.1:6379/{REDIS_DB}")
    try:
        backend.reset()
        overrides = {"MAX_SUBMISSION_BYTES": args.limit} if args.limit else {}
        with tempfile.TemporaryDirectory() as spool:
            config = settings.load(
                {},
                DATABASE_URL=backend.database_url,
                REDIS_URL=backend.redis_url,
                SPOOL_DIR=spool,
                LOG_LEVEL="CRITICAL",
                **overrides,
            )
            app = create_app(config)
            logging.disable(logging.ERROR)  # the app logs each refused case; the tally says it all
            limit = app.config["MAX_CONTENT_LENGTH"]
            started = time.monotonic()
            tally = fuzz(FuzzTarget(app, app.extensions["cpantesters"].engine, backend.redis()), args.cases,
                         args.seed, limit)  # fmt: skip
            elapsed = time.monotonic() - started
            app.extensions["cpantesters"].engine.dispose()
    finally:
        backend.close()
    print(f"{args.cases} cases, seed {args.seed}, body limit {limit} bytes, {elapsed:.0f} s")
    print(tally.table())
    print("statuses:", ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
    print("mutations:", ", ".join(f"{k}: {v}" for k, v in tally.mutations.most_common()))
    print(f"violations: {len(tally.violations)}")
    for violation in tally.violations[:50]:
        print("  " + violation[:500])
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
