"""gunicorn settings for the v3 read API (``readapi`` in the Procfile), its own process group.

Each is overridable by env (``READ_API_WORKERS``, ``READ_API_THREADS``, ...), separately
from the viewer's: lists and report pages never wait for each other's workers. nginx in
front keeps each answer for ``READ_API_MAX_AGE`` seconds (deploy/nginx/cpantesters.conf).
"""

import multiprocessing
import os

import settings

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8002')}"
workers = int(os.environ.get("READ_API_WORKERS", multiprocessing.cpu_count()))
# Threads: a list waits for the database part of the time; each thread has a pooled
# connection (READ_API_THREADS sizes both).
worker_class = "gthread"
threads = settings.load().READ_API_THREADS
# A whole /v3/upload list streams for a while on a slow client.
timeout = int(os.environ.get("READ_API_TIMEOUT", "60"))
keepalive = 5
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# No control socket: see gunicorn_viewer.conf.py.
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
