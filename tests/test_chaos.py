"""The chaos suite: the whole service as separate hosts (network namespaces: a db host
with its own MariaDB and Redis, a web host with gunicorn and the sweeper, two worker
hosts) under a steady stream of real submissions, while a worker host is killed, another
is cut off while it holds a started job, Redis restarts empty, MariaDB restarts, and the
spool fills up while MariaDB is down (``tests/chaos_scenario.py``).

The scenario runs once per session (about three minutes) and each test checks one
promise on its outcome. ``python -m bench.chaos`` runs it at full length.
"""

from __future__ import annotations

import threading

import pytest

from tests import backends, chaos_farm, chaos_scenario, netns

pytestmark = [pytest.mark.chaos, pytest.mark.system, pytest.mark.timeout(900)]

FARM = chaos_farm.FarmConfig(
    worker_hosts=2,
    workers_per_host=2,
    web_workers=4,
    sweep_interval=5,
    sweep_grace=5,
    spool_bytes=24 * 1024 * 1024,
    env=chaos_farm.SHORT_SETTINGS,
)

HEAL_DEADLINE = FARM.heartbeat_timeout + 40
"""How long the scenario waits for each fault to heal: a killed or cut-off worker's job
waits for the heartbeat timeout, then RQ's maintenance (every 5 s here) retries it after
the first retry interval (10 s). The heal times themselves are benchmark output
(``python -m bench.chaos``, bench/RESULTS.md)."""

PLAN = chaos_scenario.Plan(
    rate=30,
    warmup=5,
    outage=6,
    cut=FARM.heartbeat_timeout + 5,
    spool_outage=8,
    settle=2,
    heal_limit=HEAL_DEADLINE,
    drain_limit=60,
    senders=32,
    overlap_worker_faults=True,
)
"""Shorter than ``bench.chaos`` so that CI stays within its budget; the same faults."""


@pytest.fixture(scope="module")
def outcome(request, tmp_path_factory) -> chaos_scenario.Outcome:
    """Build the farm, run the scenario on it, take the farm down (always) and keep what was found."""
    reason = netns.available()
    missing = chaos_farm.missing_binaries()
    if reason or missing:
        message = f"the chaos farm cannot be built here: {reason or 'missing ' + ', '.join(missing)}"
        if backends.services_required():
            pytest.fail(message + " (CPT_REQUIRE_SERVICES is set)")
        pytest.skip(message)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    workdir = tmp_path_factory.mktemp("chaos")
    saying = threading.Lock()  # the heal of one fault is awaited in a thread while the next begins

    def say(line: str) -> None:
        """Progress and figures go to the terminal as they come (CI's log), and to a file."""
        with saying, open(workdir / "chaos.txt", "a") as out:
            out.write(line + "\n")
            with capture.global_and_fixture_disabled():
                print(f"chaos: {line}", flush=True)

    farm = chaos_farm.Farm(workdir, FARM)
    request.addfinalizer(farm.close)
    farm.start()
    found = chaos_scenario.run(farm, PLAN, say=say)
    for line in found.report().splitlines():
        say(line)
    if found.exited or any(f.healed is None for f in found.faults):
        for name in ("web", "sweeper", *(f"worker-{n}" for h in farm.worker_hosts for n in farm.worker_names(h))):
            say(f"--- last lines of {name}.log\n{farm.log_tail(name, 15)}")
    farm.close()
    return found


def test_every_answer_is_a_2xx_or_a_json_503(outcome):
    assert [a.describe() for a in outcome.bad_answers[:5]] == []
    assert len(outcome.acknowledged) > 0.8 * len(outcome.answers)


def test_a_full_spool_with_the_database_down_answers_a_json_503(outcome):
    (fault,) = [f for f in outcome.faults if f.full]
    refused = [a for a in outcome.answers if a.status == 503]
    assert refused and all(a.json_503 for a in refused)
    # and only then: a database outage alone is ridden out by the spool
    assert all(fault.full[0] <= a.answered <= fault.full[1] + 5 for a in refused)


def test_every_acknowledged_report_is_stored_exactly_once(outcome):
    assert outcome.lost == []
    assert outcome.stored_twice == []
    assert outcome.spooled == 0 and outcome.rejected == []


def test_every_acknowledged_report_is_counted_in_cpanstats_exactly_once(outcome):
    assert outcome.uncounted == []
    assert outcome.doubled == []


def test_release_summary_equals_a_recount_from_cpanstats(outcome):
    assert outcome.summary == outcome.recount
    assert sum(sum(v) for v in outcome.summary.values()) == sum(outcome.counted.values())


def test_nothing_is_left_pending_or_stuck_in_a_started_registry(outcome):
    assert outcome.not_done == {}
    assert outcome.redis_figures["started"] == 0
    assert outcome.redis_figures["queued"] == 0


def test_no_process_of_the_farm_exits_by_itself(outcome):
    assert outcome.exited == []


@pytest.mark.parametrize("fault", ["Redis restart", "MariaDB restart", "spool full"])
def test_the_backlog_is_processed_after_a_service_comes_back(outcome, fault):
    (found,) = [f for f in outcome.faults if fault in f.name]
    assert found.healed, found.notes


@pytest.mark.parametrize("fault", ["killed", "link cut"])
def test_a_lost_worker_s_job_is_done_again_after_the_heartbeat_timeout(outcome, fault):
    (found,) = [f for f in outcome.faults if fault in f.name]
    assert found.healed, found.notes


def test_the_link_was_cut_while_a_worker_held_a_started_job_for_longer_than_the_heartbeat_timeout(outcome):
    (found,) = [f for f in outcome.faults if "link cut" in f.name]
    assert found.outage > FARM.heartbeat_timeout
    assert found.notes[0].startswith("held report-")  # in the started registry at the cut
