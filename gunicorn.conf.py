"""gunicorn settings for the web app (``web`` in the Procfile), from ``settings`` (HOST,
PORT, WEB_CONCURRENCY, GUNICORN_*, LOG_LEVEL)."""

import importlib
import multiprocessing
import sys
from pathlib import Path

import settings

PROJECT = Path(__file__).resolve().parent


def import_project_code(forget_loaded: bool = False) -> None:
    """Import the application's code here, in the master: each worker forks with it loaded
    instead of importing it itself (0.6 s of CPU each, seconds when four boot at once on a
    busy host, while the first testers' requests wait). The app object (engine, Redis
    client) is still built in each worker, after the fork.

    ``forget_loaded`` first drops the project's modules already imported: on HUP
    (``systemctl reload``, a deploy) the workers forked next must run the new code.
    """
    if forget_loaded:
        ours = {p.name for p in PROJECT.iterdir() if (p / "__init__.py").exists()}
        ours |= {p.stem for p in PROJECT.glob("*.py")}
        for name in [n for n in sys.modules if n.split(".", 1)[0] in ours]:
            del sys.modules[name]
    try:
        importlib.import_module("app")
    except Exception as exc:  # the workers import it themselves, and report what fails
        print(f"gunicorn.conf.py: could not import the app in the master: {exc!r}", file=sys.stderr)


def warm_the_code(config) -> None:
    """Build an app in the master, send it the warm-up request, and close its connections
    before any worker forks. A process's first app and first request pay for what is then
    done for the whole process (imports left for first use, the URL map, compiled
    statements and regular expressions): 160 ms of CPU in a worker's boot before this,
    50 ms after, and four workers booting at once on two cores after a deploy or a
    restart delayed the first submissions by that much. Called once the port listens
    (:func:`when_ready`), so that requests wait in its backlog rather than being refused
    meanwhile, and again on HUP. The workers still build their own
    app, engine and Redis client after the fork: nothing that holds a connection is shared."""
    try:
        from app import create_app
        from app.services import EXTENSION_KEY
        from app.warmup import warm_up

        application = create_app(config)
    except Exception as exc:  # the workers build their app themselves, and report what fails
        print(f"gunicorn.conf.py: could not warm the app in the master: {exc!r}", file=sys.stderr)
        return
    services = application.extensions[EXTENSION_KEY]
    try:
        warm_up(application, who="master")
    finally:
        services.engine.dispose()
        services.redis.close()


import_project_code()

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


def when_ready(server):
    """The port listens (connections wait in its backlog) and no worker has forked yet:
    warm the code here, once."""
    warm_the_code(_config)


def post_worker_init(worker):
    """Connect the new worker to the database and Redis before it accepts a request."""
    from app.warmup import warm_up

    warm_up(worker.wsgi)


def on_reload(server):
    """HUP: import the deployed code before the new workers fork (the old ones finish with theirs)."""
    import_project_code(forget_loaded=True)
    warm_the_code(settings.load())
    server.log.info("re-imported the application's code for the new workers")
