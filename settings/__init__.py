"""Every setting of the service, in one place.

Each setting has a name (its environment variable), a default and one line of
documentation. The environment is read once, by :func:`load`; the README's
configuration table is generated from this module (``python -m settings``) and a
test checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

MIB = 1024 * 1024


def setting(default, doc: str):
    """Declare one setting: its default and the line that documents it."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """The service's configuration; build it with :func:`load`."""

    DATABASE_URL: str = setting(
        "sqlite:///var/cpantesters.sqlite",
        "SQLAlchemy URL of our database; `mysql://user:pass@host/db` uses pymysql.",
    )
    READ_DATABASE_URL: str = setting(
        "",
        "SQLAlchemy URL of a replica the viewer and the read API read from; empty: DATABASE_URL. A report or"
        " list not found on the replica is looked for on DATABASE_URL before the answer is a not-found.",
    )
    LEGACY_DATABASE_URL: str = setting(
        "",
        "Legacy MySQL database holding the Metabase cache; when set, reports not migrated yet are served from it.",
    )
    REDIS_URL: str = setting("redis://127.0.0.1:6379/0", "Redis holding the RQ queues (`redis://host:port/db`).")
    METABASE_AUTH: str = setting("on", "`off` accepts any secret for known profiles (a trial instance only).")
    MAX_SUBMISSION_BYTES: int = setting(
        15 * MIB,
        "Largest accepted request body; lowered at start-up to fit the database's max_allowed_packet.",
    )
    SPOOL_DIR: str = setting("var/spool", "Where submissions are fsynced while the database is unreachable.")
    REDIS_TIMEOUT: float = setting(
        0.5, "Seconds the web app waits for Redis (connect and each call) before leaving a job to the sweeper."
    )
    DB_CONNECT_TIMEOUT: int = setting(3, "Seconds to wait for a MySQL connection before spooling a submission.")
    TAIL_LOG_TTL: int = setting(5, "Seconds a built /tail/log.txt is served before it is rebuilt.")
    TAIL_LOG_SIZE: int = setting(1000, "Number of reports listed in /tail/log.txt.")
    SWEEP_INTERVAL: int = setting(60, "Seconds between two sweeps for pending reports with no live job.")
    SWEEP_GRACE: int = setting(
        30, "A pending report younger than this many seconds is left to the web app's own enqueue."
    )
    SPOOL_DRAIN_INTERVAL: int = setting(5, "Seconds between two attempts of the sweeper to drain the spool.")
    JOB_TIMEOUT: int = setting(
        120, "Seconds a report job may run before RQ stops it; a job whose worker died is re-queued this + 60 s later."
    )
    WORKER_TTL: int = setting(
        60,
        "Seconds an idle worker's registration lives between heartbeats (+60 s; RQ's worker_ttl, at least 20):"
        " a killed worker leaves the worker list within this + 60 s; an idle worker beats every this - 15 s.",
    )
    WORKER_MAINTENANCE_INTERVAL: int = setting(
        60, "Seconds between RQ's registry clean-ups (abandoned jobs are re-queued by them; RQ's default is 600)."
    )
    OUTAGE_BACKOFF_MAX: float = setting(
        10.0,
        "Longest wait, in seconds, between two attempts to reach Redis or the database during an outage"
        " (capped, jittered exponential back-off from 0.5 s; the first try is logged, not each one).",
    )
    WORKER_DB_READ_TIMEOUT: int = setting(
        60,
        "Seconds a worker waits for any MySQL answer before giving the connection up (TCP keepalive is on too);"
        " above innodb_lock_wait_timeout, so a lock wait is never taken for a dead link.",
    )
    WORKER_DB_IDLE_TIMEOUT: int = setting(
        30,
        "MySQL wait_timeout of worker sessions: a worker cut off mid-transaction has it rolled back and its row"
        " locks released by the server within this many seconds.",
    )
    LOG_LEVEL: str = setting("INFO", "Python logging level of every process.")
    VIEWER_MAX_AGE: int = setting(
        300,
        "Seconds a browser may keep a found report page before revalidating it by its ETag (`max-age`).",
    )
    VIEWER_SHARED_MAX_AGE: int = setting(
        60,
        "Seconds the proxy cache serves a found report page before refreshing it in the background"
        " (`s-maxage`): a changed tester name or a later author shows within it. Not-found is never cached.",
    )
    VIEWER_THREADS: int = setting(
        8, "Threads per viewer process (gunicorn gthread), each with a pooled database connection."
    )
    READ_API_MAX_AGE: int = setting(5, "Seconds a /v3/summary, /v3/release or /v3/upload answer may be cached.")
    READ_API_THREADS: int = setting(
        4, "Threads per read-API process (gunicorn gthread), each with a pooled database connection."
    )
    PROXY_HOPS: int = setting(
        1,
        "Reverse proxies (nginx) in front of the apps whose X-Forwarded-For/-Proto/-Host/-Port they trust"
        " (werkzeug ProxyFix); 0 when clients reach gunicorn directly.",
    )
    HOST: str = setting(
        "0.0.0.0",
        "Address the gunicorn groups (web, viewer, read API) listen on; `make run` uses 127.0.0.1 unless set.",
    )
    PORT: int = setting(
        0, "Port of a gunicorn group; 0 for the group's own default (web 8000, viewer 8001, read API 8002)."
    )
    WEB_CONCURRENCY: int = setting(0, "Worker processes of the web (submission) gunicorn group; 0 for two per CPU.")
    GUNICORN_WORKER_CLASS: str = setting("sync", "gunicorn worker class of the web group.")
    GUNICORN_THREADS: int = setting(1, "Threads per web worker (with a threaded GUNICORN_WORKER_CLASS).")
    GUNICORN_TIMEOUT: int = setting(
        30, "Seconds a web worker may spend on one request (the Perl client waits up to 60 s)."
    )
    GUNICORN_ACCESS_LOG: str = setting(
        "", "Where the gunicorn groups write their access log (`-` for stdout); empty for none."
    )
    VIEWER_WORKERS: int = setting(0, "Worker processes of the viewer gunicorn group; 0 for one per CPU.")
    VIEWER_TIMEOUT: int = setting(30, "Seconds a viewer worker may spend on one request.")
    VIEWER_NICE: int = setting(
        10,
        "Niceness of the viewer's workers: renders of pages nobody asked for lately take the CPU only when"
        " submissions and the read API leave it; 0 shares it evenly.",
    )
    READ_API_WORKERS: int = setting(0, "Worker processes of the read-API gunicorn group; 0 for one per CPU.")
    READ_API_TIMEOUT: int = setting(60, "Seconds a read-API worker may spend on one request (a long list streams).")
    PROMETHEUS_MULTIPROC_DIR: str = setting(
        "",
        "An empty directory (cleared at start) where prometheus-client keeps each gunicorn worker's request"
        " metrics, so that /metrics adds up the workers of a host; empty: each process its own.",
    )
    ADMIN_USER: str = setting("admin", "User name for `/dashboard` (HTTP Basic).")
    ADMIN_PASSWORD_HASH: str = setting(
        "",
        "werkzeug `generate_password_hash` of the `/dashboard` password; empty disables the dashboard.",
    )
    OPS_LOGIN: str = setting(
        "off",
        "`on` puts `/status` and `/metrics` behind the `/dashboard` login (ADMIN_USER, ADMIN_PASSWORD_HASH;"
        " without a hash they answer 404); `/healthz` and `/readyz` stay open.",
    )
    ALERT_SMTP_URL: str = setting(
        "", "Where the check command sends e-mail: `smtp://[user:pass@]host[:port]` (`smtps://`, `smtp+starttls://`)."
    )
    ALERT_EMAIL_TO: str = setting("", "Comma-separated recipients of the check command's e-mail.")
    ALERT_EMAIL_FROM: str = setting("cpantesters-check@localhost", "Sender address of the check command's e-mail.")
    ALERT_WEBHOOK_URL: str = setting("", "URL the check command POSTs its JSON status to when it alerts.")

    AUTH_FAILURE_LIMIT: int = setting(
        10,
        "Wrong secrets for one profile from one client address within AUTH_FAILURE_WINDOW after which that"
        " pair gets 429 with Retry-After, its secret unchecked (other addresses unaffected); 0 turns it off.",
    )
    AUTH_FAILURE_WINDOW: int = setting(
        900, "Seconds over which AUTH_FAILURE_LIMIT counts wrong secrets (moving window)."
    )

    @property
    def read_database_url(self) -> str:
        """Where the read side reads: ``READ_DATABASE_URL``, or ``DATABASE_URL`` without one."""
        return self.READ_DATABASE_URL or self.DATABASE_URL

    @property
    def auth_enabled(self) -> bool:
        return self.METABASE_AUTH.strip().lower() not in {"off", "0", "false", "no"}

    @property
    def ops_login(self) -> bool:
        return self.OPS_LOGIN.strip().lower() in {"on", "1", "true", "yes"}


def _coerce(raw: str, kind):
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    return raw


def load(environ=None, **overrides) -> Settings:
    """Build the settings from the environment (or ``environ``), then ``overrides``."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in dataclasses.fields(Settings):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif f.name in environ and environ[f.name] != "":
            values[f.name] = _coerce(environ[f.name], f.type)
    return Settings(**values)


def markdown_table() -> str:
    """The configuration table the README carries."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        rows.append(f"| `{f.name}` | `{f.default}` | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
