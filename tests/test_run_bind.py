"""`make run` (scripts.run_embedded) listens on 127.0.0.1 unless HOST says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts import run_embedded


class Started(Exception):
    """Raised where run_embedded would start its processes; carries their environment."""

    def __init__(self, env: dict):
        super().__init__("started")
        self.env = env


@pytest.fixture
def started(monkeypatch, tmp_path):
    """Run run_embedded.main() up to the point where it starts the processes (a process
    manager, however it is started); returns the environment they would get."""

    def start_processes(*args, env=None, **kwargs):
        raise Started(env if env is not None else args[-1])

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: None)  # the migration
    monkeypatch.setattr(subprocess, "call", start_processes)
    monkeypatch.setattr(os, "execve", start_processes)
    monkeypatch.setattr(run_embedded, "VAR", tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_embedded"])
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # no embedded Redis for this test
    monkeypatch.delenv("HOST", raising=False)

    def start() -> dict:
        with pytest.raises(Started) as started:
            run_embedded.main()
        return started.value.env

    return start


def test_make_run_listens_on_loopback_only_by_default(started):
    assert started()["HOST"] == "127.0.0.1"


def test_host_in_the_environment_opens_make_run_to_the_network(started, monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert started()["HOST"] == "0.0.0.0"
