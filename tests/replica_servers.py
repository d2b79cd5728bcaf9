"""A throwaway MariaDB primary and a replica of it, for the read-replica tests: two
``mariadbd`` processes, each on its own data directory (``mariadb-install-db``), port and
socket, the replica following the primary's binary log (row-based, GTID) as a production
replica does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests import processes
from tests.tls_servers import HOST, free_port, wait_for

USER, PASSWORD = "cpt", "cpt-secret"
REPL_USER, REPL_PASSWORD = "repl", "repl-secret"
DATABASE = "cpt_replica"


def missing_binaries() -> list[str]:
    return [name for name in ("mariadbd", "mariadb-install-db", "mariadb") if not _binary(name)]


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )


class MariaDBServer:
    """One ``mariadbd`` with root through its socket and ``cpt`` over TCP."""

    def __init__(self, directory: Path, server_id: int, primary: bool | None, port: int | None = None, options=()):
        """``primary``: True writes a binary log, False is a read-only replica, None neither."""
        self.directory, self.server_id, self.primary = directory, server_id, primary
        self.port = port or free_port()
        self.options = list(options)
        self.process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    def start(self, detach: bool = False) -> None:
        """Install a data directory (unless there is one) and start ``mariadbd`` on it;
        ``detach`` leaves it running after this process (a benchmark's server)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "data" / "mysql").exists():
            self._install()
        self._run(detach)

    def _install(self) -> None:
        with open(self.directory / "install.log", "wb") as log:
            subprocess.run(
                [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={self.directory / 'data'}",
                 "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"],
                stdout=log, stderr=subprocess.STDOUT, check=True, timeout=180,
            )  # fmt: skip

    def _run(self, detach: bool) -> None:
        replication = {
            True: ["--log-bin=primary-bin", "--binlog-format=ROW"],
            False: ["--skip-log-bin", "--read-only=1", "--relay-log=replica-relay"],
            None: ["--skip-log-bin"],
        }[self.primary]
        argv = [
            _binary("mariadbd"),
            "--no-defaults",
            f"--datadir={self.directory / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--server-id={self.server_id}",
            *replication,
            "--user=root",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=32M",
            f"--log-error={self.directory / 'mariadbd.err'}",
            *self.options,
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=detach
        )
        wait_for(lambda: self.process.poll() is None and self.sql("SELECT 1") == "1", 90, f"{self.name} to answer")

    @property
    def name(self) -> str:
        return {True: "primary", False: "replica", None: "server"}[self.primary]

    def sql(self, statements: str, database: str | None = None) -> str:
        """Run SQL as root through the socket; its output (tab-separated, no headers)."""
        argv = [_binary("mariadb"), f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        if database:
            argv.append(database)
        done = subprocess.run(argv, input=statements, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb ({self.name}) failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def url(self) -> str:
        return f"mysql://{USER}:{PASSWORD}@{HOST}:{self.port}/{DATABASE}"

    def log_tail(self, lines: int = 30) -> str:
        return processes.log_tail(self.directory / "mariadbd.err", lines)

    def stop(self) -> None:
        processes.stop(self.process, timeout=60)


class ReplicatedPair:
    """A primary with the service's database and accounts, and a replica following it."""

    def __init__(self, directory: Path):
        self.primary = MariaDBServer(directory / "primary", 1, primary=True)
        self.replica = MariaDBServer(directory / "replica", 2, primary=False)

    def start(self) -> None:
        self.primary.start()
        # Made on the primary, so that they reach the replica through the binary log.
        self.primary.sql(
            f"CREATE USER '{USER}'@'{HOST}' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'{HOST}';"
            f"CREATE USER '{REPL_USER}'@'{HOST}' IDENTIFIED BY '{REPL_PASSWORD}';"
            f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'{HOST}';"
            f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        )
        self.replica.start()
        self.replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos;"
            "START SLAVE;"
        )
        self.wait_caught_up()

    def replica_status(self) -> dict[str, str]:
        out = self.replica.sql("SHOW SLAVE STATUS\\G")
        status = {}
        for line in out.splitlines():
            name, _, value = line.strip().partition(": ")
            status[name] = value
        return status

    def wait_caught_up(self, timeout: float = 60) -> None:
        """Until the replica has applied everything the primary has written so far."""
        target = self.primary.sql("SELECT @@gtid_binlog_pos")

        def caught_up() -> bool:
            status = self.replica_status()
            if status.get("Last_SQL_Error") or status.get("Last_IO_Error"):
                raise RuntimeError(f"replication broken: {status}\n{self.replica.log_tail()}")
            return self.replica.sql("SELECT @@gtid_slave_pos") == target

        wait_for(caught_up, timeout, "the replica to catch up")

    def pause(self) -> None:
        """Stop applying the primary's changes (they queue in the relay log)."""
        self.replica.sql("STOP SLAVE SQL_THREAD")

    def resume(self) -> None:
        self.replica.sql("START SLAVE SQL_THREAD")

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            server.stop()
