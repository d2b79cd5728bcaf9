"""Fuzzing the submission APIs from mutated real captures (issue 20), a small budget with a
fixed seed: ``bench/fuzz.py`` runs the 10,000-case budget.

Whatever arrives, the app answers no 5xx, every error is JSON in its API's shape, every
acknowledged report is stored exactly as the acknowledgement promised, and no row is
stored without one.
"""

from __future__ import annotations

import pytest

import settings
from app import create_app
from tests.fuzz_harness import FuzzTarget, fuzz

pytestmark = pytest.mark.fuzz

BUDGET = 1000
"""Cases per backend: ~10 s each on this machine; enough for every mutation to be drawn many times."""
LIMIT = 256 * 1024
"""A lowered body limit, so that cases near the limit stay cheap."""


def test_fuzzed_submissions_break_no_guarantee(config, backend):
    app = create_app(settings.load({}, **{**config.__dict__, "MAX_SUBMISSION_BYTES": LIMIT}))
    engine = app.extensions["cpantesters"].engine
    try:
        tally = fuzz(FuzzTarget(app, engine, backend.redis()), BUDGET, random_seed=20, limit=LIMIT)
    finally:
        engine.dispose()
    print(tally.table())
    assert tally.violations == []
    stored = sum(counts["stored"] for counts in tally.stages.values())
    assert stored > BUDGET / 3, tally.table()  # the cases go deep, not all stopped at the first 400
