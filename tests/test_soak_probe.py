"""How the soak splits a Redis database: the backlog and the per-minute history follow the
load and the clock, everything else must stay flat (bench/soak_probe.py)."""

from bench.soak_probe import redis_part


def test_a_report_jobs_keys_and_its_marker_are_backlog():
    guid = "0b5b8b82-5c5a-11ef-9f3a-5d4c3a2b1a00"
    for key in (f"rq:job:report-{guid}", f"rq:executions:report-{guid}", "rq:queue:reports",
                "rq:started:reports", f"cpt:processing:taken:{guid}"):  # fmt: skip
        assert redis_part(key.encode()) == "backlog", key


def test_per_minute_counters_are_history():
    assert redis_part(b"cpt:events:submitted:29436721") == "history"


def test_workers_and_the_failed_registry_are_held_flat():
    for key in (b"rq:worker:abc", b"rq:workers", b"rq:failed:reports", b"cpt:hist:job_seconds:done"):
        assert redis_part(key) == "other", key
