"""The back-off every process uses while Redis or the database is away, on an injected
clock: capped, jittered, logged once when an outage begins and once when it ends."""

from __future__ import annotations

import logging

import pytest
import redis

import settings
from storage.engine import DatabaseUnavailable, is_unavailable
from storage.outage import Outage, is_redis_outage, wait_until
from tests.backends import free_port


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def outage(fake: FakeTime, rng=lambda: 0.5, cap=10.0) -> Outage:
    return Outage("redis", logging.getLogger("test.outage"), cap=cap, clock=fake.clock, rng=rng)


def test_waits_grow_exponentially_from_half_a_second_up_to_the_cap():
    fake = FakeTime()
    waits = [outage(fake, rng=lambda: 1.0).delay(n) for n in range(1, 9)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_each_wait_is_jittered_between_half_and_all_of_its_step():
    fake = FakeTime()
    assert outage(fake, rng=lambda: 0.0).delay(4) == 2.0
    assert outage(fake, rng=lambda: 1.0).delay(4) == 4.0
    assert outage(fake, rng=lambda: 0.0).delay(30) == 5.0  # never zero, even at the cap


def test_an_outage_is_logged_once_when_it_begins_and_once_when_it_ends(caplog):
    fake = FakeTime()
    tracker = outage(fake)
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        for _ in range(50):
            fake.now += tracker.failed(redis.exceptions.ConnectionError("refused"))
        lasted = tracker.recovered()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("redis unreachable (ConnectionError: refused)")
    assert warnings[1].startswith(f"redis back after {lasted:.1f}s (50 failed attempts)")
    assert not tracker.down
    assert tracker.recovered() is None  # nothing more to say


def test_the_next_attempt_is_due_only_after_the_wait():
    fake = FakeTime()
    tracker = outage(fake)
    assert tracker.due()
    wait = tracker.failed()
    assert not tracker.due()
    fake.now += wait
    assert tracker.due()


def test_wait_until_probes_after_each_wait_until_the_service_answers():
    fake = FakeTime()
    tracker = outage(fake, rng=lambda: 1.0, cap=4.0)
    answers = iter([redis.exceptions.ConnectionError("down")] * 4 + [None])
    beats = []

    def probe():
        answer = next(answers)
        if answer:
            raise answer

    lasted = wait_until(
        probe,
        tracker,
        is_outage=is_redis_outage,
        sleep=fake.sleep,
        first_wait=tracker.failed(),
        between=lambda: beats.append(1),
    )
    assert fake.slept == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert lasted == sum(fake.slept)
    assert len(beats) == 5


def test_wait_until_raises_at_once_what_is_not_an_outage():
    fake = FakeTime()

    def probe():
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        wait_until(probe, outage(fake), is_outage=is_redis_outage, sleep=fake.sleep)
    assert fake.slept == []


def test_unreachable_database_errors_are_told_apart_from_errors_of_the_work():
    import pymysql
    import sqlalchemy as sa

    def wrapped(code: int, message: str):
        return sa.exc.OperationalError("SELECT 1", {}, pymysql.err.OperationalError(code, message))

    assert is_unavailable(wrapped(2003, "Can't connect to MySQL server"))
    assert is_unavailable(wrapped(2013, "Lost connection to MySQL server during query (timed out)"))
    assert is_unavailable(DatabaseUnavailable("down"))
    assert not is_unavailable(wrapped(1213, "Deadlock found when trying to get lock"))
    assert not is_unavailable(wrapped(1205, "Lock wait timeout exceeded"))
    assert not is_unavailable(sa.exc.IntegrityError("INSERT", {}, pymysql.err.IntegrityError(1062, "Duplicate")))
    assert not is_unavailable(ValueError("bad data"))


def test_the_report_job_turns_an_unreachable_database_into_database_unavailable():
    from storage.engine import DatabaseUnavailable
    from workers import jobs

    jobs.configure(settings.load({}, DATABASE_URL=f"mysql://root@127.0.0.1:{free_port()}/nowhere"))
    try:
        with pytest.raises(DatabaseUnavailable):
            jobs.process_report("0b5c0e0a-1f6e-11f1-9b1d-3c8c0cbd7c01")
    finally:
        jobs.configure(None)
