"""The "why does it fail?" analysis finds a planted cause, and nothing where there is none.

Every synthetic release is drawn from a fixed seed.
"""

from __future__ import annotations

import random

from schemas.failure_analysis import Observation, analyse, bucket_versions, count_observations
from schemas.module_version import is_below

DECIMAL_FOO = ["1.03", "1.04", "1.04_01", "1.05", "1.05_01", "1.06", "1.10", "1.9"]
DOTTED_FOO = ["v1.8.0", "v1.9.0", "v1.9.5", "v1.10.0", "v1.11.0", "v1.100.0"]
OSNAMES = ["linux", "freebsd", "MSWin32", "darwin", "openbsd"]
TESTERS = [f"tester{n}@example.org" for n in range(60)]


def synthetic_release(seed: int, cause: str, foo_versions=DECIMAL_FOO, threshold="1.05", reports=2000):
    """Reports whose FAIL is caused by ``cause`` ("foo", "osname" or "none"), with noise and a confounder:
    old perls mostly come with an old Foo::Bar, but the perl is not the cause."""
    rng = random.Random(seed)
    observations = []
    for _ in range(reports):
        foo = rng.choice(foo_versions)
        old_foo = is_below(foo, threshold)
        old_perl = rng.random() < (0.8 if old_foo else 0.2)
        perl = rng.choice(["5.16.3", "5.18.4"] if old_perl else ["5.36.0", "5.38.2"])
        osname = rng.choice(OSNAMES)
        factors = {
            "perl": perl,
            "osname": osname,
            "archname": rng.choice(["x86_64-linux", "amd64-freebsd", "darwin-2level"]),
            "config useithreads": rng.choice(["define", "undef"]),
            "env LANG": rng.choice(["set", "unset"]),
            "tester": rng.choice(TESTERS),
            "prereq Foo::Bar": foo,
            "prereq Baz::Qux": rng.choice(["0.01", "0.02", "0.10", "1.00"]),
        }
        if cause == "foo":
            failed = old_foo
        elif cause == "osname":
            failed = osname == "MSWin32"
        else:
            failed = rng.random() < 0.25
        observations.append(Observation("fail" if failed else "pass", factors))
    return observations


def run(observations):
    counts = count_observations(observations)
    counts["prereq Foo::Bar (major.minor)"] = bucket_versions(counts["prereq Foo::Bar"])
    fail = sum(o.grade == "fail" for o in observations)
    passed = sum(o.grade == "pass" for o in observations)
    return analyse(
        counts, fail, passed, ordered={"perl", "prereq Foo::Bar", "prereq Foo::Bar (major.minor)", "prereq Baz::Qux"}
    )


def test_a_prerequisite_version_that_causes_fail_ranks_first_above_a_correlated_perl():
    analysis = run(synthetic_release(seed=1, cause="foo"))
    ranked = [f.factor for f in analysis.factors]
    assert set(ranked[:2]) == {"prereq Foo::Bar", "prereq Foo::Bar (major.minor)"}
    assert analysis.factors[0].significant and analysis.factors[0].cramers_v == 1.0
    assert ranked.index("perl") == 2
    top = next(f for f in analysis.factors if f.factor == "prereq Foo::Bar")
    assert top.best_cut["below"] == "1.05"
    assert top.best_cut["pass_below"] == 0 and top.best_cut["fail_at_or_above"] == 0


def test_the_cut_follows_perl_version_order_where_text_order_is_wrong():
    observations = synthetic_release(seed=2, cause="foo", foo_versions=DOTTED_FOO, threshold="v1.10.0")
    analysis = run(observations)
    assert analysis.factors[0].factor.startswith("prereq Foo::Bar")
    top = next(f for f in analysis.factors if f.factor == "prereq Foo::Bar")
    assert top.best_cut["below"] == "v1.10.0"  # as text, "v1.10.0" < "v1.9.0"
    assert (top.best_cut["pass_below"], top.best_cut["fail_at_or_above"]) == (0, 0)


def test_an_operating_system_that_causes_fail_ranks_first():
    analysis = run(synthetic_release(seed=3, cause="osname"))
    assert analysis.factors[0].factor == "osname" and analysis.factors[0].significant
    assert [f.factor for f in analysis.factors if f.significant] == ["osname"]


def test_a_release_with_no_cause_has_nothing_significant_after_correction():
    analysis = run(synthetic_release(seed=4, cause="none"))
    assert analysis.conclusive
    assert [f.factor for f in analysis.factors if f.significant] == []
    assert "no factor" in analysis.note()


def test_too_few_failures_are_said_to_be_inconclusive_and_claim_nothing():
    observations = synthetic_release(seed=5, cause="foo", reports=2000)
    few = [o for o in observations if o.grade == "pass"][:200] + [o for o in observations if o.grade == "fail"][:3]
    analysis = run(few)
    assert not analysis.conclusive
    assert not any(f.significant for f in analysis.factors)
    assert analysis.as_dict()["note"].startswith("too few reports to conclude: 3 FAIL and 200 PASS")


def test_rare_values_are_pooled_so_a_value_per_tester_does_not_look_strong():
    observations = [Observation("fail" if n % 2 else "pass", {"tester": f"t{n}"}) for n in range(100)]
    analysis = analyse(count_observations(observations), 50, 50)
    assert analysis.untestable == ["tester"] and analysis.factors == []


def test_other_grades_say_nothing_about_failing():
    counts = count_observations([Observation("na", {"osname": "linux"}), Observation("unknown", {"osname": "x"})])
    assert counts == {}
