"""gunicorn settings for the web app (``web`` in the Procfile); each overridable by env."""

import multiprocessing
import os

# The application's code is imported here, in the master, once: each worker forks with it
# loaded instead of importing it itself (0.6 s of CPU each, seconds when four boot at once
# on a busy host, while the first testers' requests wait). The app object itself (engine,
# Redis client) is still built in each worker, after the fork.
import app  # noqa: F401

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# The Perl client waits up to 60 s; a submission must never take that long.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
keepalive = 5
# Each worker builds its own app (engine, Redis client) after the fork: never share them.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# No control socket: gunicorn 27 puts every master's at ~/.gunicorn/gunicorn.ctl, so the web
# and viewer groups on one host took the same path, and the first to stop removed the
# other's. Nothing here uses it (signals do: HUP, TTIN/TTOU, TERM).
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_worker_init(worker):
    """Connect the new worker to the database and Redis before it accepts a request."""
    from app.warmup import warm_up

    warm_up(worker.wsgi)
