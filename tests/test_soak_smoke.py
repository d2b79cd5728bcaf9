"""The soak's CI smoke: ``bench/soak.py`` for two minutes, the whole system under 100
submissions/s and read load (the 30-minute run and its figures: bench/RESULTS.md).

It runs on a ``mariadbd`` and a ``redis-server`` of its own (``--servers private``, the
script's default), as the 30-minute run does. Two minutes prove no error, no lost report, no restart and flat processes and database
connections; Redis is not held flat here: within two minutes it holds the backlog of a
loaded machine and the first minute's finished jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import services_required
from tests.replica_servers import missing_binaries

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.system, pytest.mark.soak]


SECONDS = 480
"""Two minutes of load, the servers' start, and the backlog's processing on a busy machine."""


@pytest.mark.timeout(SECONDS + 150)
def test_two_minutes_of_the_whole_system_under_load_lose_nothing_and_stay_flat():
    if missing := missing_binaries():
        if services_required():
            pytest.fail(f"the soak's private servers need {', '.join(missing)} and CPT_REQUIRE_SERVICES is set")
        pytest.skip(f"needs {', '.join(missing)}")
    command = [sys.executable, "-m", "bench.soak", "--minutes", "2", "--warmup", "1", "--sample-seconds", "20",
               "--check-growth", "processes"]  # fmt: skip
    run = subprocess.Popen(command, cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = run.communicate(timeout=SECONDS)
    except subprocess.TimeoutExpired:
        run.terminate()  # SIGTERM: the script stops its processes and its private servers
        stdout, stderr = run.communicate(timeout=120)
    print(stdout[-6000:], stderr[-3000:])
    assert run.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "verdict: PASS" in stdout
    assert "left in Redis once drained: nothing" in stdout
