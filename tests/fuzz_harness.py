"""Run fuzz cases against the real submission app and hold its guarantees.

Each case goes through the Flask app (real database, real Redis) as one request. The
harness counts how deep it went (rejected before authentication, authenticated, decoded,
validated, stored) and records every broken guarantee: a 5xx, an error that is not JSON in
its API's shape, a stored document other than the one the acknowledgement promised, a row
without an acknowledgement or an acknowledgement without its row, a lost job.

Where in the pipeline a case stopped is read from the answer and from one observation: the
app's ``Intake.authenticate`` is wrapped to note that it was called and passed (it runs
after decoding on the legacy route, after validation on the v3 route).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

from queueing.contract import report_queue
from schemas.metabase import decode_registration, decode_report
from schemas.text import clean_profile_text
from schemas.translate import clean_document, index_columns, iso_z, metabase_to_v3
from storage import users
from storage.reports import load_report
from storage.tables import test_report
from tests.fuzz_inputs import FUZZ_PROFILE, FUZZ_SECRET, OTHER_PROFILE, Seed, cases, seeds

PATHS = {"legacy": "/api/v1/submit/CPAN-Testers-Report", "v3": "/v3/report", "register": "/api/v1/register"}
STAGES = ("rejected before auth", "authenticated", "decoded", "validated", "stored")
AUTHS = ("ok",) * 17 + ("wrong secret", "none", "garbage")


def basic(guid: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{guid}:{secret}".encode()).decode()}


CREDENTIALS = {
    "ok": basic(FUZZ_PROFILE, FUZZ_SECRET),
    "wrong secret": basic(OTHER_PROFILE, "not its secret"),
    "none": {},
    "garbage": {"Authorization": "Basic %%%not-base64\u00ff"},
}


@dataclass
class Tally:
    """What a fuzz run saw: cases and stages per route, statuses, mutations, violations."""

    stages: dict = field(default_factory=lambda: {route: Counter() for route in PATHS})
    statuses: Counter = field(default_factory=Counter)
    mutations: Counter = field(default_factory=Counter)
    violations: list = field(default_factory=list)
    acked: dict = field(default_factory=dict)  # guid -> route, for every stored case

    def table(self) -> str:
        """The per-stage counts as a Markdown table."""
        lines = ["| route | cases | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 2) + "|"]
        for route, counts in self.stages.items():
            cells = [str(counts[stage]) for stage in STAGES]
            lines.append(f"| {route} | {counts['cases']} | " + " | ".join(cells) + " |")
        total = Counter()
        for counts in self.stages.values():
            total.update(counts)
        lines.append(f"| all | {total['cases']} | " + " | ".join(str(total[s]) for s in STAGES) + " |")
        return "\n".join(lines)


class FuzzTarget:
    """The submission app with the fuzz profiles registered; :meth:`run` sends one case."""

    def __init__(self, app, engine: sa.Engine, redis_connection):
        self.client = app.test_client()
        self.engine = engine
        self.redis = redis_connection
        self.tally = Tally()
        users.register(engine, FUZZ_PROFILE, "Fuzz Tester", "fuzz@example.com", FUZZ_SECRET)
        users.register(engine, OTHER_PROFILE, "Other Tester", None, "its own secret")
        intake = app.extensions["cpantesters"].intake
        authenticate = intake.authenticate
        self.reached = set()

        def observed(credentials):
            self.reached.add("auth called")
            profile = authenticate(credentials)
            self.reached.add("authenticated")
            return profile

        intake.authenticate = observed

    def run(self, seed: Seed, body: bytes, mutations: tuple, auth: str) -> None:
        self.reached = set()
        headers = {"Content-Type": "application/octet-stream"}
        if seed.route != "register":
            headers.update(CREDENTIALS[auth])
        response = self.client.post(PATHS[seed.route], data=body, headers=headers)
        status = response.status_code
        self.tally.statuses[f"{seed.route} {status}"] += 1
        self.tally.mutations.update(mutations or ("none",))
        case = f"{seed.route} {seed.origin} {mutations} auth={auth} status={status}"
        problem = self._check_answer(seed.route, response)
        stored = None
        if problem is None and 200 <= status < 300:
            try:
                stored = self._check_stored(seed.route, body, response.get_json())
            except Exception as exc:  # any failure to recompute or read back is a finding
                problem = f"stored data unlike the acknowledgement: {type(exc).__name__}: {exc}"
        if problem:
            self.tally.violations.append(f"{case}: {problem}")
        self._count(seed.route, status, response, stored)

    def _check_answer(self, route: str, response) -> str | None:
        if response.status_code >= 500:
            return f"5xx: {response.get_data()[:300]!r}"
        if response.status_code < 400:
            return None
        if response.headers.get("Content-Type") != "application/json":
            return f"error Content-Type {response.headers.get('Content-Type')!r}"
        try:
            payload = json.loads(response.get_data())
        except ValueError:
            return f"error body is not JSON: {response.get_data()[:200]!r}"
        if route == "v3" and response.status_code != 429:
            ok = isinstance(payload.get("errors"), list) and all(
                isinstance(e.get("message"), str) and isinstance(e.get("path"), str) for e in payload["errors"]
            )
        else:
            ok = isinstance(payload, dict) and isinstance(payload.get("error") or payload.get("errors"), str | list)
        return None if ok else f"error body not in the API's shape: {payload!r:.200}"

    def _check_stored(self, route: str, body: bytes, answer: dict) -> str:
        """Read back what a 2xx promised; returns the GUID (profile GUID for /register)."""
        if route == "register":
            registration = decode_registration(body)
            with self.engine.connect() as conn:
                user = users.find_user(conn, registration.profile_guid)
            assert answer == {"message": "accepted"}, answer
            assert user is not None, "registered profile not stored"
            assert user["fullname"] == clean_profile_text(registration.fullname)[:255], user["fullname"]
            return registration.profile_guid
        with self.engine.connect() as conn:
            if route == "legacy":
                guid = decode_report(body).guid
                assert answer == {"guid": guid}, answer
                row = load_report(conn, guid)
                assert row is not None, "acknowledged report not stored"
                expected = metabase_to_v3(decode_report(body), row["created"], "Fuzz Tester", "fuzz@example.com")
            else:
                guid = answer["id"]
                row = load_report(conn, guid)
                assert row is not None, "acknowledged report not stored"
                sent = json.loads(body)
                kept = clean_document({k: v for k, v in sent.items() if k not in ("id", "created")})
                expected = {"id": guid, "created": iso_z(row["created"]), **kept}
        assert row["report"] == expected, "stored document differs from the submitted one"
        assert {k: row[k] for k in index_columns(expected)} == index_columns(expected), "index columns differ"
        assert row["creator"] == users.resource_of(FUZZ_PROFILE), row["creator"]
        self.tally.acked[guid] = route
        return guid

    def _count(self, route: str, status: int, response, stored: str | None) -> None:
        counts = self.tally.stages[route]
        counts["cases"] += 1
        message = json.dumps(response.get_json(silent=True) or "")
        malformed = status == 413 or "malformed JSON" in message or "nested too deeply" in message
        if route == "register":
            decoded = status == 200 or "already registered" in message
            counts.update({"rejected before auth": 0, "decoded": decoded, "validated": decoded, "stored": bool(stored)})
            return
        called, passed = "auth called" in self.reached, "authenticated" in self.reached
        counts["rejected before auth"] += not called
        counts["authenticated"] += passed
        if route == "legacy":  # decode, then authenticate, then translate and store
            counts["decoded"] += called
            counts["validated"] += passed and status in (201, 409)
        else:  # parse, validate, then authenticate and store
            counts["decoded"] += called or not malformed
            counts["validated"] += called
        counts["stored"] += stored is not None

    def final_check(self) -> None:
        """Every row acknowledged and readable, every acknowledged report queued once."""
        with self.engine.connect() as conn:
            guids = set(conn.execute(sa.select(test_report.c.guid)).scalars())
            unacked = guids - set(self.tally.acked)
            missing = set(self.tally.acked) - guids - {g for g, r in self.tally.acked.items() if r == "register"}
            for guid in guids:
                try:
                    load_report(conn, guid)
                except Exception as exc:
                    self.tally.violations.append(f"row {guid} unreadable (partial): {exc}")
        if unacked:
            self.tally.violations.append(f"{len(unacked)} rows without an acknowledgement: {sorted(unacked)[:5]}")
        if missing:
            self.tally.violations.append(f"{len(missing)} acknowledged reports missing: {sorted(missing)[:5]}")
        queued = len(report_queue(self.redis))
        reports = sum(1 for route in self.tally.acked.values() if route != "register")
        if queued != reports:
            self.tally.violations.append(f"{queued} jobs queued for {reports} stored reports")


def fuzz(target: FuzzTarget, examples: int, random_seed: int, limit: int) -> Tally:
    """Send ``examples`` cases drawn by hypothesis from ``random_seed`` (no shrinking: every
    case is one request, counted once), then run the final checks; returns the tally."""
    strategy = st.tuples(cases(seeds(), limit), st.sampled_from(AUTHS))

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @fixed_seed(random_seed)
    @given(strategy)
    def one(case):
        (seed, body, mutations), auth = case
        target.run(seed, body, mutations, auth)

    one()
    target.final_check()
    return target.tally
