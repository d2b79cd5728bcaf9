"""gunicorn settings for the report viewer (``viewer`` in the Procfile), its own process group.

Each is overridable by env (``VIEWER_WORKERS``, ``VIEWER_THREADS``, ``VIEWER_NICE``, ...),
separately from the web app's and the read API's, so that a flood of report readers can
take workers from neither submissions nor the read API. nginx in front answers repeated
views from its cache (deploy/nginx/cpantesters.conf): these workers render the misses.
"""

import multiprocessing
import os

import settings

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8001')}"
workers = int(os.environ.get("VIEWER_WORKERS", multiprocessing.cpu_count()))
# Threads: a render waits for the database part of the time; each thread has a pooled
# connection (VIEWER_THREADS sizes both).
worker_class = "gthread"
threads = settings.load().VIEWER_THREADS
timeout = int(os.environ.get("VIEWER_TIMEOUT", "30"))
keepalive = 5
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# No control socket: gunicorn 27 puts every master's at ~/.gunicorn/gunicorn.ctl, so two
# groups on one host took the same path, and the first to stop removed the other's.
# Nothing here uses it (signals do: HUP, TTIN/TTOU, TERM).
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Niceness of the workers. Views of pages seen before are nginx's (at nice 0); what reaches
# these workers is renders of pages nobody asked for lately, a demand with no bound (a
# crawler). At nice 10 they take the CPU only when submissions and the read API leave it
# (bench/RESULTS.md): a busy host renders new pages later, never submits slower.
# VIEWER_NICE=0 shares the CPU evenly.
nice = int(os.environ.get("VIEWER_NICE", "10"))


def post_fork(server, worker):
    if nice:
        os.nice(nice)
