"""Throwaway TLS servers for the remote-worker tests: a certificate authority made by
trustme, a ``redis-server`` on a TLS-only port with an ACL file, and a ``mariadbd`` with
TLS required, each with its own data directory, port and socket (the machine's shared
servers cannot change their TLS settings while they run)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import redis
import trustme

from tests import polling, processes
from tests.backends import free_port

HOST = "127.0.0.1"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REDIS_CONF = DEPLOY / "redis" / "redis-tls.conf"
MARIADB_CNF = DEPLOY / "mariadb" / "tls.cnf"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns a true value (a real process starting up)."""
    return polling.wait_for(predicate, timeout, what, interval, retry_on=(Exception,))


@dataclass
class Pki:
    """A throwaway CA, the servers' certificate (for 127.0.0.1 and localhost) and client
    certificates, as PEM files."""

    directory: Path
    ca: trustme.CA

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory, trustme.CA())
        pki.ca.cert_pem.write_to_path(str(pki.ca_file))
        server = pki.ca.issue_cert(HOST, "localhost")
        server.private_key_pem.write_to_path(str(directory / "server.key"))
        server.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
        return pki

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def client(self, name: str) -> tuple[Path, Path]:
        """A client certificate and key for ``name`` (made once)."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if not cert.exists():
            leaf = self.ca.issue_cert(f"{name}.example", common_name=name)
            leaf.private_key_pem.write_to_path(str(key))
            leaf.cert_chain_pems[0].write_to_path(str(cert))
        return cert, key


class TlsRedis:
    """``redis-server`` listening on a TLS port only (``--port 0``), client certificates
    required, users from ``aclfile``."""

    def __init__(self, directory: Path, pki: Pki, aclfile: Path, admin: tuple[str, str]):
        self.directory, self.pki, self.aclfile = directory, pki, aclfile
        self.admin = admin
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "redis-server",
            str(REDIS_CONF),  # the shipped settings; the paths and port of this test below
            "--tls-port", str(self.port),
            "--bind", HOST,
            "--tls-cert-file", str(self.pki.server_cert),
            "--tls-key-file", str(self.pki.server_key),
            "--tls-ca-cert-file", str(self.pki.ca_file),
            "--aclfile", str(self.aclfile),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.process.poll() is None and self.client(*self.admin).ping(), 30, "TLS Redis to answer")

    def url(self, user: str, password: str, certificate: str | None = None, ca: Path | None = None) -> str:
        """A ``rediss://`` URL verifying the server against the test CA (or ``ca``), with
        ``user``'s client certificate (``certificate`` names it; default: the user's name)."""
        cert, key = self.pki.client(certificate or user)
        query = urllib.parse.urlencode(
            {"ssl_ca_certs": ca or self.pki.ca_file, "ssl_certfile": cert, "ssl_keyfile": key}
        )
        return f"rediss://{user}:{password}@{HOST}:{self.port}/0?{query}"

    def client(self, user: str, password: str, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, password), socket_timeout=10, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        return processes.log_tail(self.directory / "redis.log", lines)

    def stop(self) -> None:
        processes.stop(self.process, timeout=20)


class TlsMariaDB:
    """``mariadbd`` on its own data directory, port and socket, with TLS required for every
    TCP connection (``require_secure_transport``); root only through the socket."""

    def __init__(self, directory: Path, pki: Pki):
        self.directory, self.pki = directory, pki
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "install.log", "wb") as log:
            subprocess.run(
                [
                    shutil.which("mariadb-install-db") or "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=180,
            )
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        argv = [
            mariadbd,
            f"--defaults-file={MARIADB_CNF}",  # the shipped settings; the paths and port of this test below
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            "--user=root",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            f"--ssl-ca={self.pki.ca_file}",
            f"--ssl-cert={self.pki.server_cert}",
            f"--ssl-key={self.pki.server_key}",
            f"--log-error={self.directory / 'mariadbd.err'}",
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.process.poll() is None and self.sql("SELECT 1") == "1", 90, "TLS MariaDB to answer")

    def sql(self, statements: str, database: str | None = None) -> str:
        """Run SQL as root through the socket (as an operator applies a script); its output."""
        argv = ["mariadb", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        if database:
            argv.append(database)
        done = subprocess.run(argv, input=statements, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def url(
        self, user: str, password: str, database: str, certificate: str | None = None, ca: Path | None = None
    ) -> str:
        """A ``mysql://`` URL over TLS verifying the server against the test CA (or ``ca``),
        with a client certificate when ``certificate`` names one."""
        query = {"ssl_ca": ca or self.pki.ca_file}
        if certificate:
            cert, key = self.pki.client(certificate)
            query.update(ssl_cert=cert, ssl_key=key)
        return f"mysql://{user}:{password}@{HOST}:{self.port}/{database}?{urllib.parse.urlencode(query)}"

    def log_tail(self, lines: int = 40) -> str:
        return processes.log_tail(self.directory / "mariadbd.err", lines)

    def stop(self) -> None:
        processes.stop(self.process, timeout=60)
