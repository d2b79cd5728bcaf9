"""The layers are written down (``.importlinter``) and enforced: the contract holds, and an
import against it fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["app", "scripts", "intake", "workers", "monitoring", "queueing", "storage", "schemas", "settings"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(cwd)}
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "reported"),
    [
        ("monitoring/figures.py", "from workers import jobs", "monitoring.figures -> workers.jobs"),
        ("workers/jobs.py", "from monitoring import figures", "workers.jobs -> monitoring.figures"),
        ("intake/pipeline.py", "from workers import sweeper", "intake.pipeline -> workers.sweeper"),
        ("storage/reports.py", "import settings", "storage.reports -> settings"),
        ("workers/jobs.py", "import settings", "workers.jobs -> settings"),
        ("storage/reports.py", "from intake import pipeline", "storage.reports -> intake.pipeline"),
        ("schemas/translate.py", "from storage import tables", "schemas.translate -> storage.tables"),
        ("queueing/contract.py", "from workers import jobs", "queueing.contract -> workers.jobs"),
        ("app/viewer.py", "from intake import pipeline", "app.viewer -> intake.pipeline"),
    ],
)
def test_an_import_against_the_layers_fails_the_check(tmp_path, module, planted, reported):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with open(tmp_path / module, "a") as source:
        source.write(f"\n{planted}  # planted by the test\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert reported in result.stdout
