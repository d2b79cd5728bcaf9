"""The spool's limits, found by the chaos suite: a spool file system that fills up while
the database is down, and a database that comes back under a steady stream of submissions."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

import pytest

import settings
from app import create_app
from intake import pipeline
from intake.pipeline import DATABASE_BACKOFF_SECONDS, Outcome, SubmissionPipeline
from intake.spool import Spool
from queueing.contract import connect
from storage.engine import create_engine
from tests import backends, captures
from tests.helpers import register_profile, replay, with_new_guid

UNREACHABLE_DATABASE = f"mysql://root@127.0.0.1:{backends.free_port()}/nowhere"
SUBMISSION = captures.load("01-ok")[0]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 256 KiB tmpfs (a real file system that can fill up); needs root."""
    mount = tmp_path / "fs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "cpt-test-spool", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        if backends.services_required():
            pytest.fail(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_leaving(mount, free_bytes: int) -> None:
    """Fill the file system until only about ``free_bytes`` are left."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - free_bytes))


def record() -> dict:
    body, guid = with_new_guid(SUBMISSION.body)
    return {
        "kind": "metabase",
        "url_type": "CPAN-Testers-Report",
        "body": body.decode(),
        "received": "2026-12-07T00:00:00",
    }


def test_a_submission_that_does_not_fit_in_the_spool_is_refused_not_kept_truncated(small_filesystem):
    spool = Spool(small_filesystem / "spool")
    spool.put(record())  # creates the folders
    fill_leaving(small_filesystem, 8192)  # less than one submission (about 19 KB)
    with pytest.raises(OSError):
        spool.put(record())
    assert len(spool.pending()) == 1
    assert [p.name for p in spool.directory.iterdir() if p.name.startswith(".")] == []  # no temporary left
    for path in spool.pending():
        Spool.load(path)  # every file that was acknowledged reads back whole


def test_a_full_spool_with_the_database_down_answers_a_json_503(small_filesystem, tmp_path):
    config = settings.load({}, DATABASE_URL=UNREACHABLE_DATABASE, SPOOL_DIR=str(small_filesystem / "spool"))
    app = create_app(config)
    client = app.test_client()
    body, _ = with_new_guid(SUBMISSION.body)
    assert replay(client, SUBMISSION, body).status_code == 201
    fill_leaving(small_filesystem, 8192)
    body, _ = with_new_guid(SUBMISSION.body)
    response = replay(client, SUBMISSION, body)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json
    assert len(Spool(config.SPOOL_DIR).pending()) == 1
    for path in Spool(config.SPOOL_DIR).pending():
        Spool.load(path)
    app.extensions["cpantesters"].engine.dispose()


class Clock:
    """``time.monotonic`` for the intake, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_database_is_tried_again_one_back_off_after_the_last_real_failure_however_many_submissions_spool(
    backend, tmp_path, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr("time.monotonic", clock)  # the breaker's clock
    database = backend.engine()
    register_profile(database)
    unreachable = create_engine(UNREACHABLE_DATABASE, connect_timeout=1)
    intake = SubmissionPipeline(unreachable, connect(backend.redis_url, timeout=1), Spool(tmp_path / "spool"))
    credentials = pipeline.Credentials(captures.PROFILE_GUID, captures.PROFILE_SECRET)
    received = datetime.now(UTC).replace(tzinfo=None, microsecond=0)

    def submit():
        body, _ = with_new_guid(SUBMISSION.body)
        return intake.submit_metabase(body, credentials, received=received).outcome

    assert submit() is Outcome.SPOOLED  # a real failure: the back-off starts
    for offset in (0.5, 1.0, 1.5, 1.9):  # a steady stream within the back-off goes straight to the spool
        clock.now = 1000.0 + offset * DATABASE_BACKOFF_SECONDS / 2
        assert submit() is Outcome.SPOOLED
    intake.engine = database  # the database is back
    clock.now = 1000.0 + DATABASE_BACKOFF_SECONDS + 0.1
    assert submit() is Outcome.CREATED
    unreachable.dispose()
    database.dispose()
