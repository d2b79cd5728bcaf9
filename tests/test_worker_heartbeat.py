"""A worker's heartbeat (three per job: RQ's dequeue, its loop and its job set-up) goes to
Redis as one pipelined round trip instead of three, with the same effect: the worker's
registration and its executions' set live for the given time from now."""

from __future__ import annotations

from workers.run import build_worker


def test_a_heartbeat_extends_the_registration_and_the_executions_set(backend):
    redis = backend.redis()
    worker = build_worker(redis, name="test-heartbeat")
    worker.register_birth()
    try:
        redis.sadd(worker.executions_key, "a-running-job")
        redis.hdel(worker.key, "last_heartbeat")

        worker.heartbeat(500)

        assert 490 < redis.ttl(worker.key) <= 500
        assert 490 < redis.ttl(worker.executions_key) <= 500
        assert redis.hget(worker.key, "last_heartbeat")
    finally:
        worker.register_death()
        redis.delete(worker.executions_key)


def test_a_heartbeat_without_a_timeout_lasts_the_worker_ttl_and_a_minute(backend):
    redis = backend.redis()
    worker = build_worker(redis, name="test-heartbeat-default")
    worker.register_birth()
    try:
        worker.heartbeat()

        assert worker.worker_ttl + 50 < redis.ttl(worker.key) <= worker.worker_ttl + 60
    finally:
        worker.register_death()
