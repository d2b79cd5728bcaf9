"""Failed authentications are throttled per (profile, client address): after
AUTH_FAILURE_LIMIT wrong secrets that pair gets a JSON 429 with Retry-After, without its
secret being checked; other addresses and profiles go on; correct submissions never count;
a Redis outage refuses nothing."""

from __future__ import annotations

import dataclasses
import json
import uuid

import limits.storage.redis as limits_redis
import pytest
import redis

from app import create_app
from app.throttle import FREE_MEMORY_SECONDS, AuthThrottle
from tests import captures
from tests.backends import free_port
from tests.helpers import auth_header, register_profile, services, stored_rows, with_new_guid
from tests.test_v3_api import fixture

LIMIT = 3
WINDOW = 600
ATTACKER = "203.0.113.7"
TESTER = "198.51.100.20"


@pytest.fixture
def throttled_app(config):
    application = create_app(dataclasses.replace(config, AUTH_FAILURE_LIMIT=LIMIT, AUTH_FAILURE_WINDOW=WINDOW))
    register_profile(services(application).engine)
    yield application
    services(application).engine.dispose()


@pytest.fixture
def client(throttled_app):
    return throttled_app.test_client()


SUBMISSION = captures.load("01-ok")[0]


def submit(client, address: str, secret: str = captures.PROFILE_SECRET, guid: str = captures.PROFILE_GUID):
    body, _ = with_new_guid(SUBMISSION.body)
    return client.post(
        "/api/v1/submit/CPAN-Testers-Report",
        data=body,
        headers=auth_header(guid, secret),
        environ_base={"REMOTE_ADDR": address},
    )


def fail_times(client, n: int, address: str = ATTACKER) -> None:
    for _ in range(n):
        assert submit(client, address, secret="guess").status_code == 401


def test_after_the_limit_of_wrong_secrets_the_pair_gets_429_without_its_secret_checked(client, throttled_app):
    fail_times(client, LIMIT)

    response = submit(client, ATTACKER)  # the right secret: not even checked now

    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/json"
    assert "too many failed authentications" in response.json["error"]
    assert 0 < int(response.headers["Retry-After"]) <= WINDOW
    assert stored_rows(services(throttled_app).engine) == []


def test_wrong_secrets_below_the_limit_still_get_401(client):
    fail_times(client, LIMIT - 1)
    assert submit(client, ATTACKER, secret="guess").status_code == 401
    assert submit(client, ATTACKER, secret="guess").status_code == 429


def test_another_address_is_not_affected(client):
    fail_times(client, LIMIT)
    assert submit(client, TESTER).status_code == 201
    assert submit(client, TESTER, secret="typo").status_code == 401


def test_another_profile_from_the_same_address_is_not_affected(client, throttled_app):
    other = str(uuid.uuid4())
    register_profile(services(throttled_app).engine, secret="other-secret", guid=other)
    fail_times(client, LIMIT)
    body = json.loads(SUBMISSION.body)
    body["metadata"]["core"]["guid"] = str(uuid.uuid4())
    body["metadata"]["core"]["creator"] = f"metabase:user:{other}"
    response = client.post(
        "/api/v1/submit/CPAN-Testers-Report",
        data=json.dumps(body),
        headers=auth_header(other, "other-secret"),
        environ_base={"REMOTE_ADDR": ATTACKER},
    )
    assert response.status_code == 201


def test_correct_submissions_never_count(client):
    for _ in range(LIMIT * 3):
        assert submit(client, TESTER).status_code == 201
    fail_times(client, LIMIT - 1, address=TESTER)
    assert submit(client, TESTER).status_code == 201


def test_an_unknown_profile_is_not_counted(client):
    stranger = str(uuid.uuid4())
    for _ in range(LIMIT + 1):
        assert submit(client, ATTACKER, guid=stranger).status_code == 401


def test_the_v3_api_is_throttled_with_its_own_error_shape(client):
    fail_times(client, LIMIT)
    response = client.post(
        "/v3/report",
        json=fixture("v3-perl5-valid.json"),
        headers=auth_header(),
        environ_base={"REMOTE_ADDR": ATTACKER},
    )
    assert response.status_code == 429
    assert response.json["errors"][0]["message"].startswith("too many failed authentications")
    assert int(response.headers["Retry-After"]) > 0


def test_the_pair_may_try_again_once_the_window_has_passed(client, monkeypatch):
    class Clock:
        now = 1_900_000_000.0

        @classmethod
        def time(cls):
            return cls.now

    monkeypatch.setattr(limits_redis, "time", Clock)  # the clock limits stamps its entries with
    fail_times(client, LIMIT)
    assert submit(client, ATTACKER).status_code == 429
    Clock.now += WINDOW + 1
    assert submit(client, ATTACKER).status_code == 201


def test_a_redis_outage_refuses_nothing(config, tmp_path):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    application = create_app(
        dataclasses.replace(config, REDIS_URL=unreachable, AUTH_FAILURE_LIMIT=1, AUTH_FAILURE_WINDOW=WINDOW)
    )
    register_profile(services(application).engine)
    client = application.test_client()
    try:
        for _ in range(3):
            assert submit(client, ATTACKER, secret="guess").status_code == 401
        assert submit(client, ATTACKER).status_code == 201
    finally:
        services(application).engine.dispose()


def test_limit_zero_turns_the_throttle_off(config):
    application = create_app(dataclasses.replace(config, AUTH_FAILURE_LIMIT=0))
    register_profile(services(application).engine)
    client = application.test_client()
    try:
        for _ in range(12):
            assert submit(client, ATTACKER, secret="guess").status_code == 401
        assert submit(client, ATTACKER).status_code == 201
    finally:
        services(application).engine.dispose()


class SteppedClock:
    """The throttle's own clock, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_processes(config):
    """Two web processes' throttles on the same Redis, with one controlled clock."""
    connection = redis.Redis.from_url(config.REDIS_URL)
    clock = SteppedClock()
    yield (
        clock,
        AuthThrottle(connection, LIMIT, WINDOW, clock=clock),
        AuthThrottle(connection, LIMIT, WINDOW, clock=clock),
    )
    connection.close()


def test_a_block_decided_by_another_process_applies_here_within_a_second(two_processes):
    clock, here, elsewhere = two_processes
    profile = str(uuid.uuid4())
    assert here.retry_after(profile, ATTACKER) is None
    for _ in range(LIMIT):
        elsewhere.failed(profile, ATTACKER)
    assert here.retry_after(profile, ATTACKER) is None  # still trusted free for this second
    clock.now += FREE_MEMORY_SECONDS
    assert here.retry_after(profile, ATTACKER) > 0


def test_after_a_wrong_secret_here_the_next_check_asks_redis_at_once(two_processes):
    _clock, here, elsewhere = two_processes
    profile = str(uuid.uuid4())
    assert here.retry_after(profile, ATTACKER) is None
    for _ in range(LIMIT - 1):
        elsewhere.failed(profile, ATTACKER)
    here.failed(profile, ATTACKER)
    assert here.retry_after(profile, ATTACKER) > 0
