"""``python -m tests.outage_worker``: the real worker entry point with one more job allowed,
the outage tests' own job (``tests.outage_jobs``), which kills Redis mid-finish.

Only this test entry point widens the allowlist, in its own process: production workers
start from ``workers.run``, whose allowlist nothing in Redis can change.
"""

from __future__ import annotations

from workers import allowlist
from workers.run import main

allowlist.ALLOWED_JOB_FUNCTIONS = allowlist.ALLOWED_JOB_FUNCTIONS | {"tests.outage_jobs.process_then_kill_redis"}

if __name__ == "__main__":
    main()
