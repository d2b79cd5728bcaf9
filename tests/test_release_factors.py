"""The rules of what a report counts for in its release's failure analysis (pure code on
``fact_string`` ids; ``storage/release_factors.py``)."""

from __future__ import annotations

from storage.release_factors import (
    CONFIG_FLAGS,
    ENVIRONMENT_ALLOWLIST,
    FACTOR_STRINGS,
    FactInputs,
    Kind,
    Known,
    add_report,
    column_values,
    fact_keys,
    factor_name,
)

IDS = {value: 1000 + n for n, value in enumerate(FACTOR_STRINGS)}
KNOWN = Known.from_ids(IDS)
EMPTY, SET, UNSET = IDS[""], IDS["set"], IDS["unset"]
USEITHREADS, LANG = IDS["useithreads"], IDS["LANG"]
RUNTIME, TEST, FOO, BAZ = 1, 2, 3, 4


def facts(**kwargs) -> FactInputs:
    return FactInputs(**{"user_agent": None, "config": (), "variables": None, "prerequisites": (), **kwargs})


def test_a_module_listed_in_several_phases_counts_once_at_its_smallest_version_id():
    keys = fact_keys(facts(prerequisites=((RUNTIME, FOO, 10, 52), (TEST, FOO, 10, 51), (RUNTIME, BAZ, 10, 60))), KNOWN)
    assert sorted(keys) == [(Kind.PREREQ, FOO, 51), (Kind.PREREQ, BAZ, 60)]


def test_a_module_listed_twice_in_one_phase_keeps_the_item_a_stored_list_keeps():
    """A stored list keeps one item per phase and module: the smallest (need, have)."""
    keys = fact_keys(facts(prerequisites=((RUNTIME, FOO, 11, 50), (RUNTIME, FOO, 10, 59))), KNOWN)
    assert keys == [(Kind.PREREQ, FOO, 59)]


def test_empty_values_are_unknown_not_a_value():
    keys = fact_keys(
        facts(user_agent=EMPTY, config=((USEITHREADS, EMPTY),), prerequisites=((RUNTIME, FOO, 10, EMPTY),)), KNOWN
    )
    assert keys == []


def test_only_the_perl_v_flags_are_config_factors():
    keys = fact_keys(facts(config=((USEITHREADS, 70), (IDS["LANG"], 71), (9999, 72))), KNOWN)
    assert keys == [(Kind.CONFIG, USEITHREADS, 70)]
    assert "osname" not in CONFIG_FLAGS and "archname" not in CONFIG_FLAGS


def test_a_report_with_no_environment_is_unknown_for_every_variable():
    assert fact_keys(facts(variables=None), KNOWN) == []


def test_a_report_with_an_environment_says_set_or_unset_for_each_allowlisted_variable():
    keys = fact_keys(facts(variables=frozenset({LANG, 5555})), KNOWN)
    assert len(keys) == len(ENVIRONMENT_ALLOWLIST)
    assert (Kind.ENV, LANG, SET) in keys and (Kind.ENV, IDS["LC_ALL"], UNSET) in keys


def test_the_tester_is_the_profile_guid_and_empty_columns_are_unknown():
    assert column_values("5.36.0", "", None, "metabase:user:abcd") == [(Kind.PERL, "5.36.0"), (Kind.TESTER, "abcd")]


def test_other_grades_count_in_the_totals_only():
    deltas = {}
    add_report(deltas, 7, "na", [(Kind.PERL, 1)], [(Kind.PREREQ, FOO, 51)])
    add_report(deltas, 7, "fail", [(Kind.PERL, 1)], [(Kind.PREREQ, FOO, 51)])
    add_report(deltas, 7, "pass", [(Kind.PERL, 1)], [], sign=-1)
    assert deltas == {
        (7, Kind.TOTAL, 0, 0): [1, -1, 1],
        (7, Kind.PERL, 0, 1): [1, -1, 0],
        (7, Kind.PREREQ, FOO, 51): [1, 0, 0],
    }


def test_factor_names_are_the_analysis_names():
    assert factor_name(Kind.PERL, None) == "perl"
    assert factor_name(Kind.PREREQ, "Foo::Bar") == "prereq Foo::Bar"
    assert factor_name(Kind.ENV, "LANG") == "env LANG"
