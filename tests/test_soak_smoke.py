"""The soak's CI smoke: ``bench/soak.py`` for two minutes, the whole system under 100
submissions/s and read load (the 30-minute run and its figures: bench/RESULTS.md).

Two minutes prove no error, no lost report, no restart and flat processes and database
connections; Redis is not held flat here: within two minutes it holds the backlog of a
loaded machine and the first minute's finished jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import MARIADB_HOST, MARIADB_PORT, REDIS_HOST, REDIS_PORT, reachable, services_required

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.system, pytest.mark.soak]


def test_two_minutes_of_the_whole_system_under_load_lose_nothing_and_stay_flat():
    if not (reachable(MARIADB_HOST, MARIADB_PORT) and reachable(REDIS_HOST, REDIS_PORT)):
        if services_required():
            pytest.fail("MariaDB or Redis on 127.0.0.1 is not reachable and CPT_REQUIRE_SERVICES is set")
        pytest.skip("MariaDB/Redis not reachable on 127.0.0.1")
    command = [sys.executable, "-m", "bench.soak", "--minutes", "2", "--warmup", "1", "--sample-seconds", "20",
               "--check-growth", "processes"]  # fmt: skip
    env = {**os.environ, "BENCH_REDIS_DB": os.environ.get("CPT_TEST_REDIS_DB", "13")}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "verdict: PASS" in run.stdout
