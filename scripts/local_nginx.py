"""Run Debian's nginx with the shipped site (``deploy/nginx/cpantesters.conf``) on this
machine: for ``make run`` (when nginx is installed), the system test and the benchmark.

Only what is site-specific is generated, in a folder of its own: the main ``nginx.conf``
(no daemon, its own pid, logs and temporary folders), and the three files that the
shipped site includes from ``cpantesters.d/`` (upstream addresses, cache folders, the
listen address). nginx runs as a child process (``daemon off``) and stops with it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "cpantesters.conf"
UPSTREAMS = ("web", "viewer", "readapi")


def nginx_binary() -> str | None:
    """The nginx executable, or None when it is not installed (``apt-get install nginx``)."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def write_config(
    prefix: Path, port: int, upstreams: dict[str, int], workers: int = 1, host: str = "127.0.0.1", site: Path = SITE
) -> Path:
    """Write a main configuration in ``prefix`` that includes the shipped site (or a variant
    of it, ``site``: a benchmark's) with ``host``:``port`` to listen on and ``upstreams``
    (``web``, ``viewer``, ``readapi``: their ports on 127.0.0.1); returns the path of the
    main configuration."""
    prefix = prefix.resolve()
    for folder in ("cpantesters.d", "temp", "cache", "logs"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    blocks = [
        f"upstream cpantesters_{name} {{\n    server 127.0.0.1:{upstreams[name]};\n    keepalive 32;\n}}\n"
        for name in UPSTREAMS
    ]
    (prefix / "cpantesters.d" / "upstreams.conf").write_text("".join(blocks))
    (prefix / "cpantesters.d" / "caches.conf").write_text(
        "".join(
            f"proxy_cache_path {prefix / 'cache' / zone} levels=1:2 keys_zone=cpantesters_{zone}:16m"
            f" max_size=1g inactive=1d use_temp_path=off;\n"
            for zone in ("pages", "api")
        )
    )
    (prefix / "cpantesters.d" / "listen.conf").write_text(f"listen {host}:{port};\nserver_name localhost;\n")
    temp = prefix / "temp"
    # nginx started by root hands its workers to an unprivileged user, who could not read
    # a test's private temporary folders: keep root there (only ever on this machine).
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}daemon off;
worker_processes {workers};
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    include {site};
}}
"""
    )
    return main


def start(prefix: Path, port: int, upstreams: dict[str, int], workers: int = 1, timeout: float = 15, site: Path = SITE):
    """Start nginx (a child process, no daemon) with :func:`write_config`; returns the
    process once it accepts connections on ``port``."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
    main = write_config(prefix, port, upstreams, workers, site=site)
    check = subprocess.run([binary, "-t", "-q", "-e", "stderr", "-p", str(prefix), "-c", str(main)],
                           capture_output=True, text=True)  # fmt: skip
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused the configuration: {check.stderr.strip()}")
    process = subprocess.Popen(
        [binary, "-e", "stderr", "-p", str(prefix), "-c", str(main)],
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "logs" / "stderr.log", "wb"),  # noqa: SIM115 - lives as long as nginx
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"nginx did not start: {(prefix / 'logs' / 'stderr.log').read_text()}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop nginx quickly (SIGTERM: its workers go with the master)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def command_if_installed(
    prefix: Path, port: int, upstreams: dict[str, int], host: str = "127.0.0.1"
) -> tuple[str | None, str]:
    """For ``make run``: the command that runs nginx in front of the local processes (its
    configuration written by :func:`write_config`), or None when nginx is not installed or
    refuses it; and the line to print (its URL, or why not). Never fails the run."""
    binary = nginx_binary()
    if binary is None:
        return None, "nginx is not installed: running without it (apt-get install nginx to have it in front)"
    main = write_config(prefix, port, upstreams, host=host)
    args = [binary, "-e", "stderr", "-p", str(prefix.resolve()), "-c", str(main)]
    check = subprocess.Popen([*args, "-t", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _out, errors = check.communicate()
    if check.returncode != 0:
        return None, f"nginx refused its configuration, running without it: {errors.strip()}"
    return shlex.join(args), f"Everything through nginx (deploy/nginx/cpantesters.conf): http://127.0.0.1:{port}/"
