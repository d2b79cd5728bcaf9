"""The systemd units in deploy/systemd: verified by ``systemd-analyze verify`` against the
real paths of this checkout, and the worker unit's ``ExecStart`` run with its
``EnvironmentFile`` (PID 1 is not systemd here, so that is what can be run)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from queueing.contract import enqueue_report
from tests import backends
from tests.outage_helpers import SHORT_SETTINGS
from tests.polling import wait_for
from tests.processing_helpers import states, store

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/srv/cpantesters"
ENV_FILE = "/etc/cpantesters/cpantesters.env"
NAMES = ["cpantesters-web.service", "cpantesters-viewer.service", "cpantesters-readapi.service",
         "cpantesters-sweeper.service", "cpantesters-worker@.service"]  # fmt: skip


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def localised(name: str, env_file: Path) -> str:
    """The unit with this checkout's paths: its code, its venv's executables, an env file."""
    text = (UNITS / name).read_text()
    text = text.replace(f"{INSTALL_DIR}/.venv/bin/", f"{Path(sys.executable).parent}/")
    return text.replace(ENV_FILE, str(env_file)).replace(INSTALL_DIR, str(ROOT))


@pytest.mark.parametrize("name", NAMES)
def test_every_unit_restarts_always_as_a_non_root_user_with_limits_and_the_environment_file(name):
    service = unit(name)["Service"]
    assert service["Restart"] == "always"
    assert service["User"] not in ("", "root")
    assert int(service["Nice"]) >= 0
    assert service["MemoryMax"].endswith(("M", "G"))
    assert service["EnvironmentFile"] == ENV_FILE
    assert unit(name)["Unit"]["StartLimitIntervalSec"] == "0"  # restarting never gives up
    assert service["ExecStart"].startswith(f"{INSTALL_DIR}/.venv/bin/")
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_the_example_environment_file_holds_the_two_urls():
    keys = [line.split("=", 1)[0] for line in (UNITS / "cpantesters.env.example").read_text().splitlines()
            if line and not line.startswith("#")]  # fmt: skip
    assert keys == ["DATABASE_URL", "REDIS_URL"]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if backends.services_required():
            pytest.fail("systemd-analyze is not installed and CPT_REQUIRE_SERVICES is set")
        pytest.skip("systemd-analyze is not installed")
    return found


def test_the_units_pass_systemd_analyze_verify_with_the_real_paths(tmp_path):
    env_file = tmp_path / "cpantesters.env"
    env_file.write_text((UNITS / "cpantesters.env.example").read_text())
    paths = []
    for name in NAMES:
        (tmp_path / name).write_text(localised(name, env_file))
        # A template is verified through an instance, as `systemctl enable --now cpantesters-worker@1` uses it.
        paths.append(str(tmp_path / name.replace("@.service", "@1.service")))
    result = subprocess.run([systemd_analyze(), "verify", *paths], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    env_file = tmp_path / "cpantesters.env"
    env_file.touch()
    broken = localised("cpantesters-sweeper.service", env_file).replace(
        "-m scripts.sweeper", "-m scripts.sweeper\nExecStart=/nonexistent/python"
    )
    (tmp_path / "cpantesters-sweeper.service").write_text(broken)  # two ExecStart for Type=simple
    result = subprocess.run([systemd_analyze(), "verify", str(tmp_path / "cpantesters-sweeper.service")],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 or result.stderr.strip()


def read_environment_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd reads them (comments and blank lines skipped, quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


@pytest.mark.system
def test_the_worker_units_exec_start_with_its_environment_file_processes_a_report(backend, db, tmp_path):
    env_file = tmp_path / "cpantesters.env"
    env_file.write_text(
        f"# as an operator writes it\nDATABASE_URL={backend.database_url}\nREDIS_URL={backend.redis_url}\n"
        + "".join(f"{k}={v}\n" for k, v in SHORT_SETTINGS.items())
    )
    service = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    service.optionxform = str
    service.read_string(localised("cpantesters-worker@.service", env_file))
    service = service["Service"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    environ.update(read_environment_file(Path(service["EnvironmentFile"])))
    for assignment in shlex.split(service["Environment"]):
        key, _, value = assignment.partition("=")
        environ[key] = value
    command = shlex.split(service["ExecStart"].replace("%i", "1"))
    log = tmp_path / "worker.log"
    with open(log, "wb") as output:
        worker = subprocess.Popen(command, cwd=service["WorkingDirectory"], env=environ, stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        guid = store(db, grade="pass")
        enqueue_report(backend.redis(), guid)
        wait_for(lambda: states(db)[guid] == "done", 60, "the unit's worker to process the report")
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert worker.returncode == 0, log.read_text()[-2000:]
