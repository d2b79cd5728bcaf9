"""gunicorn settings for the viewer app (``viewer`` in the Procfile), its own process group.

Each is overridable by env (``VIEWER_WORKERS``, ``VIEWER_THREADS``, ...), separately from
the web app's, so that a flood of report readers cannot take workers from submissions.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8001')}"
# One process per core: a page view is ~1 ms of Python CPU (mostly gunicorn/Flask and
# pymysql; the page itself comes from the per-process page cache), so more processes than
# cores add no throughput, only cold page caches and memory (bench/RESULTS.md).
workers = int(os.environ.get("VIEWER_WORKERS", multiprocessing.cpu_count()))
# Threads: page views are short database reads; keep-alive clients need not pin a process.
worker_class = os.environ.get("VIEWER_WORKER_CLASS", "gthread")
threads = int(os.environ.get("VIEWER_THREADS", "4"))
timeout = int(os.environ.get("VIEWER_TIMEOUT", "30"))
keepalive = 5
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Readers yield the CPU to submissions on a shared host: the old viewer made submissions
# time out by taking the machine. 0 disables it.
nice = int(os.environ.get("VIEWER_NICE", "5"))


def post_fork(server, worker):
    if nice:
        os.nice(nice)


def post_worker_init(worker):
    # Keeps the page cache's answers in use fresh, so that cached page views never wait
    # for the database (VIEWER_REVALIDATE_SECONDS; app/viewer.py).
    from app.viewer import start_revalidation

    start_revalidation(worker.wsgi)
