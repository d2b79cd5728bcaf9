"""`make run` (scripts.run_embedded) listens on 127.0.0.1 unless HOST says otherwise."""

from __future__ import annotations

import subprocess

import pytest

from scripts import run_embedded


@pytest.fixture
def started(monkeypatch, tmp_path):
    """Run run_embedded.main() up to the point where it starts honcho; returns honcho's environment."""
    seen = {}

    def fake_call(args, cwd=None, env=None):
        seen.update(env)
        return 0

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: None)  # the migration
    monkeypatch.setattr(subprocess, "call", fake_call)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # no embedded Redis for this test
    monkeypatch.delenv("HOST", raising=False)

    def start():
        assert run_embedded.main() == 0
        return seen

    return start


def test_make_run_listens_on_loopback_only_by_default(started):
    assert started()["HOST"] == "127.0.0.1"


def test_host_in_the_environment_opens_make_run_to_the_network(started, monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert started()["HOST"] == "0.0.0.0"
