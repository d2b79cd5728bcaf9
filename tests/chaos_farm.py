"""The farm of the chaos suite: the whole service as separate hosts on one machine.

Hosts are network namespaces (:mod:`tests.netns`) on one bridge:

- ``db``: its own ``mariadbd`` (a throwaway data directory made by ``mariadb-install-db``)
  and its own ``redis-server`` (no persistence), both listening on the host's link address
  only. The machine's shared servers on 127.0.0.1 are never touched.
- ``web``: gunicorn with the web app (the Procfile's ``web``) and the sweeper, with its
  spool on a small tmpfs of its own so that a test can fill it.
- ``w1``, ``w2``...: worker hosts, each running ``python -m workers.run`` processes that
  reach Redis and the database over their link only, with the production grants of the
  workers' account (``deploy/mariadb/grants.sql``, without TLS).

The test process stays in the root namespace and plays the testers (it reaches the web
host over the bridge) and the operator (it stops and starts the servers, kills hosts and
cuts links). :meth:`Farm.close` kills every process of every host, unmounts the spool and
deletes the namespaces, whatever state the farm is in.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis as redis_lib
import sqlalchemy as sa

from storage.engine import create_engine
from storage.migrate import upgrade
from tests import netns, polling
from tests.helpers import register_profile
from tests.processes import ROOT, environment

DATABASE = "cpantesters"
ADMIN_USER, ADMIN_PASSWORD = "cpt", "chaos-admin"
WORKER_USER, WORKER_PASSWORD = "cpt_worker", "chaos-worker"
MYSQL_PORT = 3306
REDIS_PORT = 6379
WEB_PORT = 8000

BINARIES = ("mariadbd", "mariadb-install-db", "redis-server")

SHORT_SETTINGS = {
    "JOB_TIMEOUT": 10,  # a silent worker's job is abandoned after 70 s (RQ adds 60 s)
    "WORKER_TTL": 20,
    "WORKER_MAINTENANCE_INTERVAL": 5,
    "OUTAGE_BACKOFF_MAX": 2,
    "WORKER_DB_IDLE_TIMEOUT": 10,
}
"""Worker settings shorter than production's, so that a killed or cut-off worker's job
comes back within a test's budget (the test and the benchmark's default)."""


def missing_binaries() -> list[str]:
    """The servers the farm runs that this machine lacks."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def _binary(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin") or name


MOUNT_SOURCE = "cpt-chaos-spool-"
"""Source name of the spool tmpfs, followed by the creating process's id."""


def remove_leftover_mounts() -> None:
    """Unmount the spool file systems of earlier runs whose process is gone (a killed test)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target = line.split()[:2]
        if source.startswith(MOUNT_SOURCE) and source[len(MOUNT_SOURCE) :].isdigit():
            pid = int(source[len(MOUNT_SOURCE) :])
            if not Path(f"/proc/{pid}").exists():
                subprocess.run(["umount", "-l", target.replace("\\040", " ")], capture_output=True)


def utc(timestamp: float) -> datetime:
    """A wall-clock time as the naive UTC the database keeps."""
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something true (an error counts as "not yet")."""
    return polling.wait_for(predicate, timeout, what, interval, retry_on=(Exception,))


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class FarmConfig:
    """How big the farm is and the settings its processes get."""

    worker_hosts: int = 2
    workers_per_host: int = 2
    web_workers: int = 4
    """gunicorn sync workers on the web host (its default on two cores: two per core)."""
    spool_bytes: int = 64 * 1024 * 1024
    """Size of the web host's spool file system (a tmpfs): room for the MariaDB outages
    (about 25 KB per submission), until the scenario fills it on purpose."""
    sweep_interval: int = 5
    sweep_grace: int = 5
    spool_drain_interval: int = 1
    db_connect_timeout: int = 1
    log_level: str = "INFO"
    env: dict = field(default_factory=dict)
    """More settings for every process of the farm (e.g. shorter worker timeouts)."""
    mariadbd_options: list = field(default_factory=list)
    """More ``mariadbd`` options; the server otherwise runs on its defaults, as in production."""

    @property
    def heartbeat_timeout(self) -> int:
        """Seconds after which RQ takes a started job whose worker went silent as abandoned
        (the job timeout + 60 s: RQ's heartbeat TTL for a job)."""
        return int(self.env.get("JOB_TIMEOUT", 120)) + 60


class Farm:
    """The hosts, their servers and processes; every fault the chaos scenario injects."""

    def __init__(self, workdir: Path, config: FarmConfig | None = None):
        self.workdir = Path(workdir)
        self.config = config or FarmConfig()
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.network: netns.Network | None = None
        self.mariadbd: subprocess.Popen | None = None
        self.redis_server: subprocess.Popen | None = None
        self.spool_mount = self.workdir / "spoolfs"
        self.spool_dir = self.spool_mount / "spool"
        self.filler = self.spool_mount / "filler"
        self._mounted = False
        self.worker_processes: dict[str, list[subprocess.Popen]] = {}
        self.killed: set[int] = set()
        """Process ids the farm killed on purpose (the others must never exit)."""
        self.generation: dict[str, int] = {}
        self.web_process: subprocess.Popen | None = None
        self.sweeper_process: subprocess.Popen | None = None
        self._engine: sa.Engine | None = None

    # -- addresses and URLs -------------------------------------------------------

    def database_url(self, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
        return f"mysql://{user}:{password}@{self.db.address}:{MYSQL_PORT}/{DATABASE}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.db.address}:{REDIS_PORT}/0"

    @property
    def web_address(self) -> tuple[str, int]:
        return self.web.address, WEB_PORT

    def engine(self) -> sa.Engine:
        """The operator's engine (root namespace, over the bridge), for checks."""
        if self._engine is None:
            self._engine = create_engine(self.database_url(), connect_timeout=1, pool_pre_ping=True)
        return self._engine

    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=1)

    def env(self, **values) -> dict:
        """The environment of a farm process: the Procfile's two URLs plus the farm's settings."""
        config = self.config
        return environment(
            REDIS_URL=self.redis_url,
            SPOOL_DIR=self.spool_dir,
            SWEEP_INTERVAL=config.sweep_interval,
            SWEEP_GRACE=config.sweep_grace,
            SPOOL_DRAIN_INTERVAL=config.spool_drain_interval,
            DB_CONNECT_TIMEOUT=config.db_connect_timeout,
            LOG_LEVEL=config.log_level,
            **config.env,
            **values,
        )

    # -- start and stop -------------------------------------------------------------

    def start(self) -> None:
        """Create the hosts, the servers and the database, then web, sweeper and workers."""
        self.network = netns.Network()
        self.db = self.network.add_host("db")
        self.web = self.network.add_host("web")
        self.worker_hosts = [self.network.add_host(f"w{i + 1}") for i in range(self.config.worker_hosts)]
        self._install_mariadb()
        self.start_mariadb()
        self._create_database()
        self.start_redis()
        upgrade(self.database_url())
        self._grant_worker()
        register_profile(self.engine())
        self._mount_spool()
        self.start_web()
        for host in self.worker_hosts:
            self.start_workers(host)
        names = [name for host in self.worker_hosts for name in self.worker_names(host)]
        wait_for(lambda: all(self.redis().exists(f"rq:worker:{n}") for n in names), 90, "the workers to register")

    def close(self) -> None:
        """Stop everything; safe to call on a half-started farm, and twice."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self.network is not None:
            self.network.close()
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.spool_mount)], capture_output=True)
            self._mounted = False
        shutil.rmtree(self.workdir / "mariadb", ignore_errors=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- MariaDB ------------------------------------------------------------------

    @property
    def _datadir(self) -> Path:
        return self.workdir / "mariadb" / "data"

    @property
    def _socket(self) -> Path:
        return self.workdir / "mariadb" / "mysqld.sock"

    def _install_mariadb(self) -> None:
        self._datadir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "mariadb-install.log", "wb") as log:
            subprocess.run(
                [
                    _binary("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={self._datadir}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
            )

    def start_mariadb(self) -> float:
        """Start the db host's MariaDB and wait until it answers over the link; returns when."""
        options = [
            "--no-defaults",
            f"--datadir={self._datadir}",
            f"--socket={self._socket}",
            f"--pid-file={self._datadir.parent / 'mysqld.pid'}",
            f"--bind-address={self.db.address}",
            f"--port={MYSQL_PORT}",
            "--user=root",
            "--skip-name-resolve",
            "--max-connections=500",
            *self.config.mariadbd_options,
        ]
        self.mariadbd = self.db.popen([_binary("mariadbd"), *options], self.logs / "mariadbd.log", env=None)
        wait_for(
            lambda: self.mariadbd.poll() is None and port_open(self.db.address, MYSQL_PORT),
            60,
            "MariaDB to listen",
        )
        if self._engine is not None:
            wait_for(self.database_answers, 30, "MariaDB to answer")
        return time.time()

    def stop_mariadb(self, kill: bool = False) -> None:
        """Stop MariaDB (SIGTERM: a clean shutdown; ``kill``: SIGKILL, a crash)."""
        process = self.mariadbd
        if process is None or process.poll() is not None:
            return
        self.killed.add(process.pid)
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=120)

    def database_answers(self) -> bool:
        try:
            with self.engine().connect() as conn:
                return conn.execute(sa.text("SELECT 1")).scalar() == 1
        except Exception:
            return False

    def _grant_worker(self) -> None:
        """The production grants (``deploy/mariadb/grants.sql``) for the workers' account,
        without TLS (the farm's links are plain)."""
        statements = (
            f"SET @db = '{DATABASE}', @worker_password = '{WORKER_PASSWORD}', @reader_password = 'chaos-reader',"
            f" @require = 'NONE'; SOURCE {ROOT / 'deploy' / 'mariadb' / 'grants.sql'};"
        )
        self._sql(statements)

    def _sql(self, statements: str) -> None:
        """Run statements as the server's root, over its socket."""
        done = subprocess.run(
            ["mariadb", f"--socket={self._socket}", "-uroot", "-e", statements],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")

    def _create_database(self) -> None:
        statements = f"""
            CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
            CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}';
            GRANT ALL ON {DATABASE}.* TO '{ADMIN_USER}'@'%';
        """
        self._sql(statements)

    # -- Redis --------------------------------------------------------------------

    def start_redis(self) -> float:
        """Start the db host's Redis, empty and without persistence; returns when it answers."""
        workdir = self.workdir / "redis"
        workdir.mkdir(exist_ok=True)
        argv = [_binary("redis-server"), "--bind", self.db.address, "--port", str(REDIS_PORT)]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(workdir)]
        self.redis_server = self.db.popen(argv, self.logs / "redis.log", env=None)
        wait_for(lambda: self.redis().ping(), 30, "Redis to answer")
        return time.time()

    def kill_redis(self) -> None:
        """SIGKILL Redis: with no persistence, every queue, registry and counter is gone."""
        process = self.redis_server
        if process is not None and process.poll() is None:
            self.killed.add(process.pid)
            process.kill()
            process.wait(timeout=30)

    # -- web host -------------------------------------------------------------------

    def _mount_spool(self) -> None:
        remove_leftover_mounts()
        self.spool_mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.config.spool_bytes},mode=0700", f"{MOUNT_SOURCE}{os.getpid()}"]
            + [str(self.spool_mount)],
            check=True,
            capture_output=True,
        )
        self._mounted = True
        self.spool_dir.mkdir()

    def start_web(self) -> None:
        """gunicorn (the Procfile's ``web``) and the sweeper on the web host."""
        env = self.env(DATABASE_URL=self.database_url(), HOST=self.web.address, PORT=WEB_PORT)
        env["WEB_CONCURRENCY"] = str(self.config.web_workers)
        argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        self.web_process = self.web.popen(argv, self.logs / "web.log", env=env, cwd=ROOT)
        sweeper = [sys.executable, "-m", "scripts.sweeper"]
        self.sweeper_process = self.web.popen(sweeper, self.logs / "sweeper.log", env=env, cwd=ROOT)
        # gunicorn listens before its workers have booted: wait for an answer.
        wait_for(lambda: self._get("/healthz") == 200, 90, "the web app to answer")

    def _get(self, path: str) -> int:
        connection = http.client.HTTPConnection(*self.web_address, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def spooled(self) -> int:
        """Submissions waiting in the spool."""
        return sum(1 for p in self.spool_dir.iterdir() if p.suffix == ".json" and not p.name.startswith("."))

    def rejected(self) -> list[str]:
        """Spooled submissions the drainer could not store (each with its reason)."""
        folder = self.spool_dir / "rejected"
        if not folder.is_dir():
            return []
        return [p.read_text().strip() for p in sorted(folder.glob("*.reason"))]

    def fill_spool(self) -> int:
        """Fill the spool's file system to the last byte; returns the bytes written."""
        written = 0
        chunk = b"\0" * 65536
        with open(self.filler, "wb") as out:
            while True:
                try:
                    count = os.write(out.fileno(), chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += count
                if count < len(chunk):
                    chunk = chunk[:1]  # a short write: take the last bytes one page at a time
        return written

    def free_spool(self) -> None:
        self.filler.unlink(missing_ok=True)

    # -- worker hosts ---------------------------------------------------------------

    def worker_names(self, host: netns.Host) -> list[str]:
        generation = self.generation.get(host.role, 0)
        return [f"{host.role}-{i + 1}-g{generation}" for i in range(self.config.workers_per_host)]

    def start_workers(self, host: netns.Host) -> float:
        """Start the host's workers (new names: RQ refuses a name a dead worker still holds)."""
        self.generation[host.role] = self.generation.get(host.role, 0) + 1
        env = self.env(DATABASE_URL=self.database_url(WORKER_USER, WORKER_PASSWORD))
        started = []
        for name in self.worker_names(host):
            argv = [sys.executable, "-m", "workers.run", "--name", name]
            started.append(host.popen(argv, self.logs / f"worker-{name}.log", env=env, cwd=ROOT))
        self.worker_processes[host.role] = started
        return time.time()

    def kill_host(self, host: netns.Host) -> list[int]:
        """SIGKILL every process of a host (a power cut)."""
        pids = host.kill_all(signal.SIGKILL)
        self.killed.update(pids)
        return pids

    def started_job_on(self, host: netns.Host) -> str | None:
        """The ``job:execution`` key of a job a worker of ``host`` is running now, if any."""
        connection = self.redis()
        pipe = connection.pipeline(transaction=False)
        for name in self.worker_names(host):
            pipe.smembers(f"rq:worker:{name}:executions")
        for members in pipe.execute():
            for member in members:
                return member.decode()
        return None

    def in_started_registry(self, execution_key: str, queue: str = "reports") -> bool:
        return self.redis().zscore(f"rq:wip:{queue}", execution_key) is not None

    # -- what must never happen -------------------------------------------------------

    def exited_by_themselves(self) -> list[str]:
        """Farm processes (web, sweeper, workers, servers) that exited without being killed."""
        processes = {"web": self.web_process, "sweeper": self.sweeper_process}
        for role, started in self.worker_processes.items():
            for index, process in enumerate(started):
                processes[f"{role} worker {index + 1}"] = process
        processes["mariadbd"] = self.mariadbd
        processes["redis-server"] = self.redis_server
        return [
            f"{name} (exit {process.returncode})"
            for name, process in processes.items()
            if process is not None and process.poll() is not None and process.pid not in self.killed
        ]
