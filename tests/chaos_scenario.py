"""The chaos scenario: a steady stream of real submissions into the farm
(:mod:`tests.chaos_farm`) while faults are injected one after the other, then the checks
that nothing acknowledged was lost or counted twice.

Shared by the system test (``tests/test_chaos.py``, a short plan that fits CI) and the
benchmark (``python -m bench.chaos``, the full-length plan, figures printed).

The faults, each during the load, each followed by a wait until it has healed:

1. ``worker host killed``: SIGKILL of every process of one worker host; started again
   after the outage.
2. ``worker link cut``: the link of another worker host is cut while one of its workers
   holds a started job, for longer than the heartbeat timeout; then restored.
3. ``Redis restart``: Redis is killed and started again empty (no persistence: queues,
   registries, schedules and counters are gone).
4. ``MariaDB restart``: a clean shutdown, the outage, a start.
5. ``MariaDB down, spool full``: MariaDB stopped, the web host's spool file system filled
   to its last byte: submissions must then get a JSON 503; then MariaDB comes back and the
   spool is freed.

A fault has healed when every report acknowledged before the service came back is
processed (no ``pending`` row received before it, the spool empty). The time from the
return to that moment is the fault's heal time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa

from storage.tables import cpanstats, release_data, release_summary, test_report
from tests import captures
from tests.chaos_farm import Farm, utc
from tests.helpers import HOP_HEADERS


@dataclass
class Plan:
    """How long each part of the scenario lasts (seconds) and the submission rate (per second)."""

    rate: float = 100
    warmup: float = 10
    outage: float = 15
    """Length of the worker host, Redis and MariaDB outages."""
    cut: float = 45
    """Length of the link cut; must be longer than the workers' heartbeat timeout."""
    spool_outage: float = 20
    """Length of the MariaDB outage during which the spool is filled."""
    settle: float = 5
    """Load without faults between a heal and the next fault."""
    heal_limit: float = 120
    """Give up waiting for a fault to heal after this long (the heal is then recorded as missing)."""
    drain_limit: float = 120
    """After the load stops, how long the farm may take to process what is left."""
    senders: int = 64
    """Client connections (an open loop: a slow answer never delays the next submission)."""
    overlap_worker_faults: bool = False
    """Cut the link as soon as the killed host is back, without waiting for it to heal (both
    wait for the heartbeat timeout; the cut job is received after the killed host's return,
    so neither figure includes the other's stranded job). Saves a heartbeat timeout."""


# -- the testers ------------------------------------------------------------------------


@dataclass
class Answer:
    guid: str
    due: float
    answered: float
    status: int
    content_type: str = ""
    body: bytes = b""
    error: str = ""

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json_503(self) -> bool:
        """A 503 as the Perl client understands it: JSON with an ``error`` message."""
        if self.status != 503 or self.content_type.split(";")[0].strip() != "application/json":
            return False
        try:
            return isinstance(json.loads(self.body).get("error"), str)
        except (ValueError, AttributeError):
            return False

    def describe(self) -> str:
        if self.error:
            return f"no answer ({self.error})"
        return f"{self.status} {self.content_type} {self.body[:120]!r}"


class Load:
    """Submits the captured real submission (``01-ok``) at a steady rate, each time under a
    fresh report GUID, from the root namespace to the web host; records every answer."""

    def __init__(self, address: tuple[str, int], rate: float, senders: int = 64):
        recorded = captures.load("01-ok")[0]
        original = json.loads(recorded.body)["metadata"]["core"]["guid"].encode()
        self.parts = recorded.body.split(original)
        self.path = recorded.path
        self.headers = {k: v for k, v in recorded.headers if k.lower() not in HOP_HEADERS}
        self.address = address
        self.rate = rate
        self.senders = senders
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._work: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.stopped = 0.0
        self.dropped = 0

    def start(self) -> None:
        self.started = time.time()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(self.senders)]
        self._threads.append(threading.Thread(target=self._schedule, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.senders):
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=120)
        self.stopped = time.time()

    def _schedule(self) -> None:
        index = 0
        while not self._stop.is_set():
            due = self.started + index / self.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            self._work.put(due)
            index += 1

    def _send(self) -> None:
        connection = None
        while True:
            due = self._work.get()
            if due is None:
                break
            if self._stop.is_set():  # the load is over: what the senders are behind with is never sent
                self.dropped += 1
                continue
            guid = str(uuid.uuid4())
            body = guid.encode().join(self.parts)
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(*self.address, timeout=60)
                connection.request("POST", self.path, body=body, headers=self.headers)
                response = connection.getresponse()
                data = response.read()
                answer = Answer(guid, due, time.time(), response.status, response.getheader("Content-Type", ""), data)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                answer = Answer(guid, due, time.time(), 0, error=f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                connection = None
            with self._lock:
                self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


# -- the faults -------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault: how long the service was away and how long the farm took to heal."""

    name: str
    began: float
    returned: float
    healed: float | None = None
    notes: list[str] = field(default_factory=list)
    full: tuple[float, float] | None = None
    """When the spool was full (the spool fault only)."""

    @property
    def outage(self) -> float:
        return self.returned - self.began

    @property
    def heal_seconds(self) -> float | None:
        return None if self.healed is None else self.healed - self.returned


def backlog_processed(farm: Farm, before: float) -> bool:
    """Every report received before ``before`` is processed and the spool is empty."""
    if farm.spooled():
        return False
    query = (
        sa.select(sa.func.count())
        .select_from(test_report)
        .where(test_report.c.state == "pending", test_report.c.created <= utc(before))
    )
    try:
        with farm.engine().connect() as conn:
            return conn.execute(query).scalar_one() == 0
    except sa.exc.SQLAlchemyError:
        return False


def wait_healed(farm: Farm, fault: Fault, limit: float, say) -> Fault:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if backlog_processed(farm, fault.returned):
            fault.healed = time.time()
            break
        time.sleep(0.25)
    outcome = f"healed in {fault.heal_seconds:.1f}s" if fault.healed else f"NOT healed within {limit:.0f}s"
    say(f"{fault.name}: outage {fault.outage:.1f}s, {outcome}")
    return fault


def kill_worker_host(farm: Farm, plan: Plan, say) -> Fault:
    host = farm.worker_hosts[0]
    began = time.time()
    pids = farm.kill_host(host)
    say(f"killed every process of {host.role} ({len(pids)} processes)")
    time.sleep(max(0.0, began + plan.outage - time.time()))
    returned = farm.start_workers(host)
    return Fault(f"worker host {host.role} killed", began, returned)


CUT_ATTEMPTS_FOR_PENDING = 50
"""Cuts (each restored at once) tried for a job whose report is not yet committed, before
any started job will do (at 100/s most jobs a poll finds are already finishing)."""


def cut_worker_link(farm: Farm, plan: Plan, say) -> Fault:
    """Cut a worker host's link the moment one of its workers is in the middle of a job:
    the job is in the started registry and its report not yet committed as done."""
    host = farm.worker_hosts[-1]
    deadline = time.monotonic() + 60
    attempts = 0
    while True:
        held = farm.started_job_on(host)
        if held:
            attempts += 1
            host.link_down()
            began = time.time()
            state = _report_state(farm, held)
            if farm.in_started_registry(held) and (state == "pending" or attempts >= CUT_ATTEMPTS_FOR_PENDING):
                break
            host.link_up()  # the job ended before the cut: try again
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker of {host.role} held a started job within 60 s")
        time.sleep(0.002)
    job_id = held.rsplit(":", 1)[0]
    say(f"cut {host.role}'s link while it held {job_id} (report {state}; attempt {attempts})")
    time.sleep(max(0.0, began + plan.cut - time.time()))
    host.link_up()
    fault = Fault(f"worker host {host.role} link cut", began, time.time())
    fault.notes.append(f"held {job_id}, report {state} at the cut")
    return fault


def _report_state(farm: Farm, execution_key: str) -> str | None:
    guid = execution_key.rsplit(":", 1)[0].removeprefix("report-")
    with farm.engine().connect() as conn:
        return conn.execute(sa.select(test_report.c.state).where(test_report.c.guid == guid)).scalar()


def restart_redis(farm: Farm, plan: Plan, say) -> Fault:
    began = time.time()
    farm.kill_redis()
    say("Redis killed (no persistence: the queue is gone)")
    time.sleep(max(0.0, began + plan.outage - time.time()))
    returned = farm.start_redis()
    return Fault("Redis restart", began, returned)


def restart_mariadb(farm: Farm, plan: Plan, say) -> Fault:
    began = time.time()
    farm.stop_mariadb()
    say("MariaDB stopped")
    time.sleep(max(0.0, began + plan.outage - time.time()))
    returned = farm.start_mariadb()
    return Fault("MariaDB restart", began, returned)


def mariadb_down_spool_full(farm: Farm, plan: Plan, say, load: Load) -> Fault:
    began = time.time()
    farm.stop_mariadb()
    with contextlib.suppress(TimeoutError):
        _wait(lambda: farm.spooled() > 0, 10)
    spooled_before_fill = farm.spooled()
    filled_at = time.time()
    filled = farm.fill_spool()
    say(f"MariaDB stopped; {spooled_before_fill} submissions spooled, then the spool filled ({filled} bytes)")
    time.sleep(max(0.0, began + plan.spool_outage - time.time()))
    # The point of the fault: a full spool with the database down answers a JSON 503.
    with contextlib.suppress(TimeoutError):
        _wait(lambda: any(a.status == 503 and a.due > filled_at for a in load.snapshot()), 15)
    returned = farm.start_mariadb()
    farm.free_spool()
    fault = Fault("MariaDB down, spool full", began, returned)
    fault.notes.append(f"{spooled_before_fill} spooled before the fill")
    fault.full = (filled_at, returned)
    return fault


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


# -- the checks -------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything the scenario measured and found."""

    plan: Plan
    faults: list[Fault]
    answers: list[Answer]
    load_seconds: float
    drained_after: float | None
    stored_counts: dict[str, int] = field(default_factory=dict)
    counted: Counter = field(default_factory=Counter)
    release_rows: Counter = field(default_factory=Counter)
    states: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    recount: dict = field(default_factory=dict)
    redis_figures: dict = field(default_factory=dict)
    spooled: int = 0
    rejected: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    full_spool_503s: int = 0

    @property
    def acknowledged(self) -> list[str]:
        return [a.guid for a in self.answers if a.acknowledged]

    @property
    def bad_answers(self) -> list[Answer]:
        return [a for a in self.answers if not (a.acknowledged or a.json_503)]

    @property
    def lost(self) -> list[str]:
        """Acknowledged but not stored in ``test_report``."""
        return [g for g in self.acknowledged if self.stored_counts.get(g, 0) == 0]

    @property
    def stored_twice(self) -> list[str]:
        return [g for g, n in self.stored_counts.items() if n > 1]

    @property
    def uncounted(self) -> list[str]:
        """Acknowledged but not in ``cpanstats``."""
        return [g for g in self.acknowledged if self.counted[g] == 0]

    @property
    def doubled(self) -> list[str]:
        """In ``cpanstats`` or ``release_data`` more than once."""
        return sorted(
            {g for g, n in self.counted.items() if n > 1} | {g for g, n in self.release_rows.items() if n > 1}
        )

    @property
    def not_done(self) -> dict[str, str]:
        return {g: s for g, s in self.states.items() if s != "done"}

    @property
    def achieved_rate(self) -> float:
        return len(self.answers) / self.load_seconds if self.load_seconds else 0.0

    def report(self) -> str:
        """The figures, as printed by the test and the benchmark."""
        statuses = Counter(a.status for a in self.answers)
        waits = sorted(a.answered - a.due for a in self.answers) or [0.0]
        lines = [
            f"load: {len(self.answers)} submissions in {self.load_seconds:.0f}s "
            f"(offered {self.plan.rate:.0f}/s, sent {self.achieved_rate:.1f}/s); answers "
            + ", ".join(f"{status or 'none'}: {count}" for status, count in sorted(statuses.items()))
            + f"; from due to answered p50 {waits[len(waits) // 2]:.2f}s, p99 {waits[int(len(waits) * 0.99)]:.2f}s,"
            f" max {waits[-1]:.1f}s",
            f"{'fault':<34} {'outage':>8} {'heal':>8}  (service back -> every report received before it processed)",
        ]
        for fault in self.faults:
            heal = f"{fault.heal_seconds:.1f}s" if fault.healed else "NEVER"
            lines.append(f"{fault.name:<34} {fault.outage:>7.1f}s {heal:>8}  {'; '.join(fault.notes)}")
        drained = f"{self.drained_after:.1f}s" if self.drained_after is not None else "NOT within the limit"
        lines.append(f"after the load stopped, everything processed in {drained}")
        lines.append(
            f"acknowledged {len(self.acknowledged)}; lost {len(self.lost)}; stored twice {len(self.stored_twice)}; "
            f"not in cpanstats {len(self.uncounted)}; counted twice {len(self.doubled)}; "
            f"not done {len(self.not_done)} {dict(Counter(self.not_done.values()))}; "
            f"bad answers {len(self.bad_answers)}"
        )
        lines.append(
            f"release_summary == recount from cpanstats: {self.summary == self.recount}; "
            f"spool left {self.spooled}, rejected {len(self.rejected)}; Redis {self.redis_figures}"
        )
        if self.exited:
            lines.append("exited by themselves: " + ", ".join(self.exited))
        return "\n".join(lines)


def summary_by_release(conn) -> dict:
    """``release_summary`` summed per (dist, version): ``{(dist, version): (pass, fail, na, unknown)}``."""
    t = release_summary.c
    query = sa.select(t.dist, t.version, sa.func.sum(t["pass"]), sa.func.sum(t.fail), sa.func.sum(t.na))
    query = query.add_columns(sa.func.sum(t.unknown)).group_by(t.dist, t.version)
    return {(r[0], r[1]): tuple(int(v) for v in r[2:]) for r in conn.execute(query)}


def recount_from_cpanstats(conn) -> dict:
    """The same figures counted from ``cpanstats`` itself (the rows the summary stands for)."""
    c = cpanstats.c
    grades = [sa.func.sum(sa.case((c.state == grade, 1), else_=0)) for grade in ("pass", "fail", "na", "unknown")]
    query = sa.select(c.dist, c.version, *grades).where(c.type == 2).group_by(c.dist, c.version)
    return {(r[0], r[1]): tuple(int(v) for v in r[2:]) for r in conn.execute(query)}


def collect(farm: Farm, outcome: Outcome) -> Outcome:
    """Read what the farm holds, for the checks."""
    with farm.engine().connect() as conn:
        outcome.stored_counts = dict(
            conn.execute(sa.select(test_report.c.guid, sa.func.count()).group_by(test_report.c.guid)).all()
        )
        outcome.states = dict(conn.execute(sa.select(test_report.c.guid, test_report.c.state)).all())
        outcome.counted = Counter(
            dict(conn.execute(sa.select(cpanstats.c.guid, sa.func.count()).group_by(cpanstats.c.guid)).all())
        )
        outcome.release_rows = Counter(
            dict(conn.execute(sa.select(release_data.c.guid, sa.func.count()).group_by(release_data.c.guid)).all())
        )
        outcome.summary = summary_by_release(conn)
        outcome.recount = recount_from_cpanstats(conn)
    connection = farm.redis()
    outcome.redis_figures = {
        "queued": connection.llen("rq:queue:reports"),
        "started": connection.zcard("rq:wip:reports"),
        "scheduled": connection.zcard("rq:scheduled:reports"),
        "failed": connection.zcard("rq:failed:reports"),
    }
    outcome.spooled = farm.spooled()
    outcome.rejected = farm.rejected()
    outcome.exited = farm.exited_by_themselves()
    return outcome


def run(farm: Farm, plan: Plan, say=print) -> Outcome:
    """Run the whole scenario on a started farm and return what was measured and found."""
    load = Load(farm.web_address, plan.rate, plan.senders)
    faults: list[Fault] = []
    begun = time.monotonic()

    def log(message: str) -> None:
        say(f"[{time.monotonic() - begun:6.1f}s] {message}")

    load.start()
    log(f"load started at {plan.rate:.0f}/s")
    try:
        time.sleep(plan.warmup)
        steps = [
            lambda: kill_worker_host(farm, plan, log),
            lambda: cut_worker_link(farm, plan, log),
            lambda: restart_redis(farm, plan, log),
            lambda: restart_mariadb(farm, plan, log),
            lambda: mariadb_down_spool_full(farm, plan, log, load),
        ]
        with ThreadPoolExecutor(2) as healing:
            for number, step in enumerate(steps):
                fault = step()
                faults.append(fault)
                heal = healing.submit(wait_healed, farm, fault, plan.heal_limit, log)
                if number == 0 and plan.overlap_worker_faults:
                    continue  # the link cut begins while the killed host heals
                heal.result()
                time.sleep(plan.settle)
    finally:
        load.stop()
        log(f"load stopped: {len(load.answers)} submissions")
    stopped = time.time()
    drained_after = None
    deadline = time.monotonic() + plan.drain_limit
    acknowledged = {a.guid for a in load.answers if a.acknowledged}
    while time.monotonic() < deadline:
        if backlog_processed(farm, stopped) and _all_done(farm, acknowledged):
            drained_after = time.time() - stopped
            break
        time.sleep(0.5)
    log("everything processed" if drained_after is not None else "NOT everything processed")
    for fault in faults:
        if fault.full:  # answers still in flight at the fault's end are in now
            refused = [a for a in load.answers if a.status == 503]
            during = [a for a in refused if fault.full[0] <= a.answered <= fault.full[1] + 5]
            fault.notes.append(f"{len(during)} answered 503 while it was full ({len(refused)} 503s in all)")
    outcome = Outcome(plan, faults, load.answers, load.stopped - load.started, drained_after)
    outcome.full_spool_503s = sum(1 for a in load.answers if a.json_503)
    return collect(farm, outcome)


def _all_done(farm: Farm, acknowledged: set[str]) -> bool:
    try:
        with farm.engine().connect() as conn:
            done = set(conn.execute(sa.select(test_report.c.guid).where(test_report.c.state == "done")).scalars())
    except sa.exc.SQLAlchemyError:
        return False
    return acknowledged <= done
