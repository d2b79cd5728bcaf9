"""gunicorn settings for the web app (``web`` in the Procfile), from ``settings`` (HOST,
PORT, WEB_CONCURRENCY, GUNICORN_*, LOG_LEVEL)."""

import multiprocessing

import settings

_config = settings.load()  # not "config": a gunicorn setting of that name exists

bind = f"{_config.HOST}:{_config.PORT or 8000}"
workers = _config.WEB_CONCURRENCY or multiprocessing.cpu_count() * 2
worker_class = _config.GUNICORN_WORKER_CLASS
threads = _config.GUNICORN_THREADS
# The Perl client waits up to 60 s; a submission must never take that long.
timeout = _config.GUNICORN_TIMEOUT
keepalive = 5
# Each worker builds its own app (engine, Redis client) after the fork: never share them.
preload_app = False
accesslog = _config.GUNICORN_ACCESS_LOG or None
# No control socket: gunicorn 27 puts every master's at ~/.gunicorn/gunicorn.ctl, so the web
# and viewer groups on one host took the same path, and the first to stop removed the
# other's. Nothing here uses it (signals do: HUP, TTIN/TTOU, TERM).
control_socket_disable = True
errorlog = "-"
loglevel = _config.LOG_LEVEL.lower()
