"""The shipped account definitions keep up with the code: every table is either granted in
deploy/mariadb/grants.sql or named there as granted to neither account, and the Redis ACL
generator makes one user per worker host with only hashed passwords."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import redis_acl
from storage.tables import metadata

GRANTS = Path(__file__).resolve().parent.parent / "deploy" / "mariadb" / "grants.sql"


def test_every_table_is_granted_or_named_as_not_granted():
    """A new table (a migration) needs a decision here: the workers get nothing by default."""
    text = GRANTS.read_text()
    granted = set(re.findall(r"ON ', @in, '(\w+) TO", text))
    named = set(re.findall(r"\b(\w+)\b", text.split("Tables granted to neither account:", 1)[1].split("\n\n", 1)[0]))
    tables = {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert tables <= granted | named, sorted(tables - granted - named)


def test_the_worker_account_never_reads_the_testers_secrets():
    text = GRANTS.read_text()
    worker_lines = [line for line in text.splitlines() if "TO ', @worker" in line]
    assert worker_lines and not any("metabase_user" in line for line in worker_lines)
    reader_profile = [line for line in text.splitlines() if "metabase_user TO ', @reader" in line]
    assert reader_profile and not any("secret" in line for line in reader_profile)


def test_the_acl_file_has_one_user_per_host_and_no_password_in_clear(tmp_path):
    text = redis_acl.acl_file([("worker", "worker-host1"), ("worker", "worker-host2"), ("web", "cpt-web")], tmp_path)
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert lines["default"].startswith("user default off")
    assert set(lines) == {"default", "worker-host1", "worker-host2", "cpt-web"}
    for name in ("worker-host1", "worker-host2", "cpt-web"):
        password = (tmp_path / f"{name}.password").read_text().strip()
        assert password not in text
        assert (tmp_path / f"{name}.password").stat().st_mode & 0o777 == 0o600
    assert lines["worker-host1"].split("#")[1] != lines["worker-host2"].split("#")[1]


def test_a_password_file_is_kept_across_runs(tmp_path):
    first = redis_acl.acl_file([("worker", "worker-host1")], tmp_path)
    assert redis_acl.acl_file([("worker", "worker-host1")], tmp_path) == first


def test_worker_users_get_no_dangerous_command():
    rules = redis_acl.ROLES["worker"]
    allowed = {r[1:] for r in rules if r.startswith("+")}
    for command in ("flushall", "flushdb", "keys", "scan", "config", "acl", "eval", "client|list", "client|kill",
                    "monitor", "shutdown", "debug", "script|flush", "publish", "@all"):  # fmt: skip
        assert command not in allowed
    assert "~*" not in rules


def test_an_unknown_role_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown role"):
        redis_acl.acl_file([("root", "x")], tmp_path)
