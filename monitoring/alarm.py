"""The alarm: judge the pipeline figures against thresholds (Nagios states) and tell someone.

Used by ``scripts/check_pipeline.py``. The little state the judgement needs between two
runs (failed-registry samples, the time the check first ran, the last state notified) is
kept in Redis, so the check may run from cron on any host.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage

import redis

from monitoring.figures import Figures
from queueing import counters

logger = logging.getLogger(__name__)

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

FAILED_SAMPLES_KEY = "cpt:check:failed_samples"
FIRST_RUN_KEY = "cpt:check:first_run"
LAST_STATE_KEY = "cpt:check:last_state"


@dataclass(frozen=True)
class Thresholds:
    """Defaults sized for the CPAN Testers' flow (thousands of reports an hour)."""

    wait_warning: float = 300
    wait_critical: float = 900
    queue_warning: int = 10_000
    queue_critical: int = 100_000
    min_workers: int = 1
    failed_growth: int = 0
    failed_window: int = 3600
    spool_age: float = 300
    quiet_minutes: int = 60


@dataclass
class Verdict:
    state: int = OK
    problems: list[str] = field(default_factory=list)
    perfdata: dict = field(default_factory=dict)

    def add(self, state: int, message: str) -> None:
        self.state = max(self.state, state)
        self.problems.append(message if state == CRITICAL else f"{STATE_NAMES[state].lower()}: {message}")

    @property
    def name(self) -> str:
        return STATE_NAMES[self.state]

    def line(self) -> str:
        """The one status line: state, problems (or a summary) and Nagios performance data."""
        summary = "; ".join(self.problems) if self.problems else "reports flow"
        perf = " ".join(f"{k}={v}" for k, v in self.perfdata.items() if v is not None)
        return f"PIPELINE {self.name} - {summary}" + (f" | {perf}" if perf else "")


def failed_growth(connection: redis.Redis, failed_now: int, window: int, now: float) -> int | None:
    """Growth of the failed registry since the oldest sample within ``window`` seconds
    (``None`` on the first run); records this run's sample."""
    pipe = connection.pipeline(transaction=False)
    pipe.zrangebyscore(FAILED_SAMPLES_KEY, now - window, "+inf", start=0, num=1)
    pipe.zadd(FAILED_SAMPLES_KEY, {f"{now:.3f}:{failed_now}": now})
    pipe.zremrangebyscore(FAILED_SAMPLES_KEY, "-inf", now - 2 * window)
    pipe.expire(FAILED_SAMPLES_KEY, 2 * window)
    oldest = pipe.execute()[0]
    if not oldest:
        return None
    member = oldest[0].decode() if isinstance(oldest[0], bytes) else oldest[0]
    return failed_now - int(member.rsplit(":", 1)[1])


def last_submission(connection: redis.Redis, now: float) -> float:
    """Epoch of the latest submission, or of the check's first run when none was counted yet."""
    last = connection.get(counters.last_key(counters.SUBMITTED))
    if last is not None:
        return float(last)
    connection.set(FIRST_RUN_KEY, int(now), nx=True)
    return float(connection.get(FIRST_RUN_KEY) or now)


def judge(figures: Figures, thresholds: Thresholds, connection: redis.Redis | None) -> Verdict:
    """The Nagios state of the pipeline and why."""
    verdict = Verdict()
    now = figures.collected_at
    t = thresholds
    verdict.perfdata = {
        "waiting": figures.waiting,
        "oldest_waiting": None if figures.oldest_waiting_seconds is None else f"{figures.oldest_waiting_seconds:.0f}s",
        "queued": figures.queued,
        "failed_jobs": figures.failed_jobs,
        "workers": figures.workers_alive,
        "spooled": figures.spooled,
    }
    for backend, error in sorted(figures.errors.items()):
        verdict.add(CRITICAL, f"{backend} unreachable ({error})")

    age = figures.oldest_waiting_seconds
    if age is not None:
        if age > t.wait_critical:
            verdict.add(CRITICAL, f"a report has waited {age:.0f}s (> {t.wait_critical:g}s)")
        elif age > t.wait_warning:
            verdict.add(WARNING, f"a report has waited {age:.0f}s (> {t.wait_warning:g}s)")

    if figures.workers_alive is not None and figures.workers_alive < t.min_workers:
        if figures.workers_alive == 0:
            verdict.add(CRITICAL, "no live worker: reports are not being processed")
        else:
            verdict.add(CRITICAL, f"{figures.workers_alive} worker(s) alive (< {t.min_workers})")

    queued = figures.queued
    if queued is not None:
        if queued >= t.queue_critical:
            verdict.add(CRITICAL, f"{queued} jobs queued (>= {t.queue_critical})")
        elif queued >= t.queue_warning:
            verdict.add(WARNING, f"{queued} jobs queued (>= {t.queue_warning})")

    if figures.failed_jobs is not None and connection is not None:
        growth = failed_growth(connection, figures.failed_jobs, t.failed_window, now)
        if growth is not None and growth > t.failed_growth:
            verdict.add(
                CRITICAL,
                f"failed registry grew by {growth} in {t.failed_window // 60} min (now {figures.failed_jobs})",
            )

    if figures.spooled and figures.oldest_spooled_seconds is not None and figures.oldest_spooled_seconds > t.spool_age:
        verdict.add(
            CRITICAL,
            f"{figures.spooled} spooled report(s) not drained for {figures.oldest_spooled_seconds:.0f}s "
            f"(> {t.spool_age:g}s)",
        )

    if t.quiet_minutes and connection is not None and "redis" not in figures.errors:
        quiet = now - last_submission(connection, now)
        if quiet > t.quiet_minutes * 60:
            verdict.add(CRITICAL, f"nothing submitted for {quiet / 60:.0f} min (> {t.quiet_minutes} min)")
    return verdict


# -- telling someone -------------------------------------------------------------------


def should_notify(connection: redis.Redis | None, verdict: Verdict, always: bool = False) -> bool:
    """Notify on every change of state (recovery included), or on every bad run with ``always``."""
    previous = None
    if connection is not None:
        try:
            previous = connection.getset(LAST_STATE_KEY, verdict.name)
            previous = previous.decode() if isinstance(previous, bytes) else previous
        except redis.RedisError:
            previous = None
    if verdict.state == OK:
        return previous not in (None, "OK")
    return always or previous != verdict.name


def send_email(smtp_url: str, sender: str, recipients: list[str], subject: str, body: str, timeout: float = 10):
    """Send one message through ``smtp://``, ``smtps://`` or ``smtp+starttls://`` (user:pass@ optional)."""
    url = urllib.parse.urlsplit(smtp_url)
    secure = url.scheme == "smtps"
    port = url.port or (465 if secure else 25)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(body)
    smtp_class = smtplib.SMTP_SSL if secure else smtplib.SMTP
    with smtp_class(url.hostname, port, timeout=timeout, local_hostname=socket.getfqdn()) as smtp:
        if url.scheme == "smtp+starttls":
            smtp.starttls(context=ssl.create_default_context())
        if url.username:
            smtp.login(urllib.parse.unquote(url.username), urllib.parse.unquote(url.password or ""))
        smtp.send_message(message)


def post_webhook(url: str, payload: dict, timeout: float = 10) -> int:
    """POST ``payload`` as JSON (with a ``text`` key, which Slack/Mattermost hooks display)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "cpantesters-check"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (operator-configured URL)
        return response.status


def notify(config, verdict: Verdict, figures: Figures) -> list[str]:
    """Send the status line by e-mail and/or webhook as configured; returns the errors."""
    errors = []
    line = verdict.line()
    host = socket.gethostname()
    if config.ALERT_SMTP_URL and config.ALERT_EMAIL_TO:
        recipients = [r.strip() for r in config.ALERT_EMAIL_TO.split(",") if r.strip()]
        body = f"{line}\n\nchecked on {host} at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n\n"
        body += json.dumps(figures.as_dict() | {"history": None}, indent=2, default=str)
        try:
            send_email(config.ALERT_SMTP_URL, config.ALERT_EMAIL_FROM, recipients, f"[cpantesters] {line[:150]}", body)
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(f"e-mail not sent: {exc}")
    if config.ALERT_WEBHOOK_URL:
        payload = {"state": verdict.name, "exit_code": verdict.state, "text": line, "host": host,
                   "problems": verdict.problems, "figures": figures.as_dict() | {"history": None}}  # fmt: skip
        try:
            post_webhook(config.ALERT_WEBHOOK_URL, payload)
        except OSError as exc:
            errors.append(f"webhook not posted: {exc}")
    return errors
