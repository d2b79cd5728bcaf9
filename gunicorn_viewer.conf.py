"""gunicorn settings for the viewer app (``viewer`` in the Procfile), its own process group.

Each is overridable by env (``VIEWER_WORKERS``, ``VIEWER_NICE``, ...), separately from
the web app's, so that a flood of report readers cannot take workers from submissions.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8001')}"
# One process per core: a cached page view is answered on the worker's event loop from its
# page cache (app/viewer_front.py), so a process is busy about one core, and more of them
# add only page caches to fill and revalidate, and memory (bench/RESULTS.md).
workers = int(os.environ.get("VIEWER_WORKERS", multiprocessing.cpu_count()))
# uvicorn's gunicorn worker (C HTTP parser, libuv loop) serving the ASGI front: gthread
# spent ~70 % of a cached page view in Python request handling. Slow or idle keep-alive
# clients cost no thread either. Requests that need Flask run in VIEWER_THREADS threads.
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int(os.environ.get("VIEWER_TIMEOUT", "30"))
keepalive = 5
# A listening socket per worker (SO_REUSEPORT): the kernel spreads connections over the
# workers by hash. With one shared socket, whichever worker wakes first takes the
# connections of a burst (64 keep-alive clients split 40/24 in bench.viewer), and as each
# process runs on about one core (the GIL), the busier one sets the tail latency. The
# catch: a second viewer started by the same user on the same port shares it instead of
# failing to bind. VIEWER_REUSE_PORT=0 turns it off.
reuse_port = os.environ.get("VIEWER_REUSE_PORT", "1") != "0"
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# No control socket: gunicorn 27 puts every master's at ~/.gunicorn/gunicorn.ctl, so the web
# and viewer groups on one host took the same path, and the first to stop removed the
# other's. Nothing here uses it (signals do: HUP, TTIN/TTOU, TERM).
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Niceness of the workers. The old viewer made submissions time out by taking the machine;
# this one is two processes of about one core each (the GIL) and a cached page costs
# ~0.3 ms. At nice 0, under the benchmark's flood of 72 connections, submissions kept
# 91-100% of their 200/s with none failed (but waited up to seconds), while nice 5 starved
# the viewer to a third of its pages/s and a p99 of 363 ms (bench/RESULTS.md).
# VIEWER_NICE=5 makes readers yield the CPU to submissions again.
nice = int(os.environ.get("VIEWER_NICE", "0"))


def post_fork(server, worker):
    if nice:
        os.nice(nice)


def post_worker_init(worker):
    # Keeps the page cache's answers in use fresh, so that cached page views never wait
    # for the database (VIEWER_REVALIDATE_SECONDS; app/viewer.py).
    worker.wsgi.start_revalidation()  # worker.wsgi: the ASGI front (wsgi_viewer:viewer)
