"""gunicorn settings for the report viewer (``viewer`` in the Procfile), its own process group.

Each comes from ``settings`` (``VIEWER_WORKERS``, ``VIEWER_THREADS``, ``VIEWER_NICE``, ...),
separately from the web app's and the read API's, so that a flood of report readers can
take workers from neither submissions nor the read API. nginx in front answers repeated
views from its cache (deploy/nginx/cpantesters.conf): these workers render the misses.
"""

import multiprocessing
import os

import settings

_config = settings.load()  # not "config": a gunicorn setting of that name exists

bind = f"{_config.HOST}:{_config.PORT or 8001}"
workers = _config.VIEWER_WORKERS or multiprocessing.cpu_count()
# Threads: a render waits for the database part of the time; each thread has a pooled
# connection (VIEWER_THREADS sizes both).
worker_class = "gthread"
threads = _config.VIEWER_THREADS
timeout = _config.VIEWER_TIMEOUT
keepalive = 5
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = _config.GUNICORN_ACCESS_LOG or None
# No control socket: gunicorn 27 puts every master's at ~/.gunicorn/gunicorn.ctl, so two
# groups on one host took the same path, and the first to stop removed the other's.
# Nothing here uses it (signals do: HUP, TTIN/TTOU, TERM).
control_socket_disable = True
errorlog = "-"
loglevel = _config.LOG_LEVEL.lower()
# Niceness of the workers. Views of pages seen before are nginx's (at nice 0); what reaches
# these workers is renders of pages nobody asked for lately, a demand with no bound (a
# crawler). At nice 10 they take the CPU only when submissions and the read API leave it
# (bench/RESULTS.md): a busy host renders new pages later, never submits slower.
# VIEWER_NICE=0 shares the CPU evenly.
nice = _config.VIEWER_NICE


def post_fork(server, worker):
    if nice:
        os.nice(nice)
