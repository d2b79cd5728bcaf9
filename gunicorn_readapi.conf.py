"""gunicorn settings for the v3 read API (``readapi`` in the Procfile), its own process group.

Each comes from ``settings`` (``READ_API_WORKERS``, ``READ_API_THREADS``, ...), separately
from the viewer's: lists and report pages never wait for each other's workers. nginx in
front keeps each answer for ``READ_API_MAX_AGE`` seconds (deploy/nginx/cpantesters.conf).
"""

import multiprocessing

import settings

_config = settings.load()  # not "config": a gunicorn setting of that name exists

bind = f"{_config.HOST}:{_config.PORT or 8002}"
workers = _config.READ_API_WORKERS or multiprocessing.cpu_count()
# Threads: a list waits for the database part of the time; each thread has a pooled
# connection (READ_API_THREADS sizes both).
worker_class = "gthread"
threads = _config.READ_API_THREADS
# A whole /v3/upload list streams for a while on a slow client.
timeout = _config.READ_API_TIMEOUT
keepalive = 5
# Each worker builds its own app (engine) after the fork: never share connections.
preload_app = False
accesslog = _config.GUNICORN_ACCESS_LOG or None
# No control socket: see gunicorn_viewer.conf.py.
control_socket_disable = True
errorlog = "-"
loglevel = _config.LOG_LEVEL.lower()
