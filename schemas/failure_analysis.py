"""Why does a release fail? Rank candidate factors by their association with FAIL against PASS.

Pure computation over counts: the read side counts, per factor and value, the FAIL and PASS
reports of a release (in SQL, so that a release with tens of thousands of reports costs one
grouped query) and hands the counts here. For each factor the FAIL/PASS by value table is
tested for independence (Fisher's exact test for a two-value factor, Pearson's chi-square
otherwise, from scipy), its strength given as Cramér's V, and the p-values of all factors
corrected together for the number tested (Benjamini-Hochberg). Values seen in fewer than
``RARE_VALUE`` reports are pooled as ``(other)``, so that a factor with a value per tester
does not look strong by chance. For a factor whose values are versions, the cut that best
separates FAIL from PASS (as Perl orders versions) is given as a reading aid.

Only the read side imports this module (it needs scipy); the workers do not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.special import chdtrc
from scipy.stats import false_discovery_control, fisher_exact

from schemas.module_version import parse as parse_version
from schemas.module_version import sort_key as version_sort_key

RARE_VALUE = 5
"""Values seen in fewer reports than this are pooled as ``(other)``."""

MIN_EACH = 5
"""Fewer FAIL or fewer PASS reports than this: too few to conclude anything."""

ALPHA = 0.05
"""The false discovery rate the corrected p-values (q-values) are held to."""

OTHER = "(other)"

Counts = Mapping[str, Mapping[str, tuple[int, int]]]
"""factor -> value -> (FAIL reports, PASS reports)."""


@dataclass(frozen=True)
class Observation:
    """One report: its grade and the value of each factor it has (a missing factor is unknown)."""

    grade: str
    factors: Mapping[str, str]


def count_observations(observations: Iterable[Observation]) -> dict[str, dict[str, list[int]]]:
    """FAIL/PASS counts per factor and value (other grades say nothing about failing and are left out)."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for observation in observations:
        column = {"fail": 0, "pass": 1}.get(observation.grade.lower())
        if column is None:
            continue
        for factor, value in observation.factors.items():
            if value is not None:
                counts[factor][str(value)][column] += 1
    return counts


def bucket_versions(values: Mapping[str, tuple[int, int]]) -> dict[str, list[int]]:
    """The same counts with each version bucketed to major.minor (what is no version kept as is)."""
    buckets: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for value, (fail, passed) in values.items():
        version = parse_version(value)
        key = version.major_minor() if version else value
        buckets[key][0] += fail
        buckets[key][1] += passed
    return buckets


def with_major_minor(counts: Counts, factors: Iterable[str]) -> tuple[dict, set[str]]:
    """``counts`` plus, for each named version factor, ``<factor> (major.minor)`` bucketed;
    returns the counts and the names of the new (ordered) factors."""
    extended = dict(counts)
    added = set()
    for factor in factors:
        if factor in counts:
            name = f"{factor} (major.minor)"
            extended[name] = bucket_versions(counts[factor])
            added.add(name)
    return extended, added


@dataclass
class FactorResult:
    """The association of one factor with FAIL."""

    factor: str
    values: list[dict]
    test: str
    cramers_v: float
    p_value: float
    q_value: float = 1.0
    significant: bool = False
    best_cut: dict | None = None
    reports: int = 0

    def as_dict(self) -> dict:
        return {
            "factor": self.factor,
            "reports": self.reports,
            "cramers_v": round(self.cramers_v, 4),
            "test": self.test,
            "p_value": self.p_value,
            "q_value": self.q_value,
            "significant": self.significant,
            "values": self.values,
            **({"best_cut": self.best_cut} if self.best_cut else {}),
        }


@dataclass
class Analysis:
    """Every testable factor, strongest first."""

    fail: int
    passed: int
    factors: list[FactorResult] = field(default_factory=list)
    untestable: list[str] = field(default_factory=list)

    @property
    def conclusive(self) -> bool:
        return self.fail >= MIN_EACH and self.passed >= MIN_EACH

    def note(self) -> str:
        if not self.conclusive:
            return (
                f"too few reports to conclude: {self.fail} FAIL and {self.passed} PASS "
                f"(at least {MIN_EACH} of each are needed)"
            )
        if not any(f.significant for f in self.factors):
            return "no factor is associated with FAIL after correcting for the number of factors tested"
        return (
            f"factors with q < {ALPHA} are associated with FAIL (Benjamini-Hochberg over {len(self.factors)} factors)"
        )

    def as_dict(self) -> dict:
        return {
            "fail": self.fail,
            "pass": self.passed,
            "conclusive": self.conclusive,
            "note": self.note(),
            "alpha": ALPHA,
            "factors": [f.as_dict() for f in self.factors],
            "untestable": self.untestable,
        }


def _pooled(values: Mapping[str, tuple[int, int]]) -> dict[str, list[int]]:
    pooled: dict[str, list[int]] = {}
    other = [0, 0]
    for value, (fail, passed) in values.items():
        if fail + passed < RARE_VALUE:
            other[0] += fail
            other[1] += passed
        else:
            pooled[value] = [fail, passed]
    if other[0] + other[1]:
        pooled[OTHER] = other
    return pooled


def _best_cut(values: Mapping[str, tuple[int, int]]) -> dict | None:
    """The version below which reports fail most differently from those at or above it."""
    ordered = sorted((v for v in values if parse_version(v) is not None), key=version_sort_key)
    if len(ordered) < 2:
        return None
    total_fail = sum(values[v][0] for v in ordered)
    total_pass = sum(values[v][1] for v in ordered)
    best = None
    below_fail = below_pass = 0
    for index, value in enumerate(ordered[:-1]):
        below_fail += values[value][0]
        below_pass += values[value][1]
        above_fail, above_pass = total_fail - below_fail, total_pass - below_pass
        phi = _phi(below_fail, below_pass, above_fail, above_pass)
        if best is None or phi > best[0]:
            best = (phi, ordered[index + 1], below_fail, below_pass, above_fail, above_pass)
    if best is None:
        return None
    phi, cut, below_fail, below_pass, above_fail, above_pass = best
    return {
        "below": cut,
        "fail_below": below_fail,
        "pass_below": below_pass,
        "fail_at_or_above": above_fail,
        "pass_at_or_above": above_pass,
        "phi": round(phi, 4),
    }


def _phi(a: int, b: int, c: int, d: int) -> float:
    denominator = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    return abs(a * d - b * c) / denominator if denominator else 0.0


def _pearson(table: list[list[int]]) -> tuple[float, float]:
    """Pearson's chi-square of a 2 x k table and its p-value: what ``scipy.stats.chi2_contingency
    (table, correction=False)`` computes, the same numpy operations in the same order (so the
    same figures), without its argument checking and dispatch (1-2 ms a call, tens of factors)."""
    observed = np.asarray(table)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 0.0, 1.0
    chi2 = float((((observed.astype(np.float64) - expected) ** 2) / expected).sum())
    return chi2, float(chdtrc(dof, chi2))


def _test(factor: str, values: Mapping[str, tuple[int, int]], ordered: bool) -> FactorResult | None:
    pooled = _pooled(values)
    # In a fixed order: the database returns the values in no particular one, and the sums
    # below would differ in their last bits.
    columns = sorted(value for value, (fail, passed) in pooled.items() if fail + passed)
    if len(columns) < 2:
        return None
    table = [[pooled[v][0] for v in columns], [pooled[v][1] for v in columns]]
    if 0 in (sum(table[0]), sum(table[1])):
        return None
    reports = sum(table[0]) + sum(table[1])
    chi2, chi2_p = _pearson(table)
    cramers_v = math.sqrt(chi2 / reports) if reports else 0.0  # min(rows, columns) - 1 is 1: two rows
    if len(columns) == 2:
        test, p_value = "fisher", float(fisher_exact(table).pvalue)
    else:
        test, p_value = "chi2", float(chi2_p)
    key = version_sort_key if ordered else (lambda v: (-(pooled[v][0] + pooled[v][1]), v))
    listed = sorted(columns, key=lambda v: (v == OTHER, key(v)))
    return FactorResult(
        factor=factor,
        values=[{"value": v, "fail": pooled[v][0], "pass": pooled[v][1]} for v in listed],
        test=test,
        cramers_v=min(cramers_v, 1.0),
        p_value=p_value,
        best_cut=_best_cut(values) if ordered else None,
        reports=reports,
    )


def analyse(counts: Counts, fail: int, passed: int, ordered: Iterable[str] = ()) -> Analysis:
    """Rank every factor in ``counts`` by Cramér's V; ``ordered`` names the factors whose values are versions.

    ``fail`` and ``passed`` are the release's FAIL and PASS totals (a factor may be known for
    fewer reports). Significance is only claimed when the analysis is conclusive.
    """
    ordered = set(ordered)
    analysis = Analysis(fail=fail, passed=passed)
    for factor in sorted(counts):
        result = _test(factor, counts[factor], factor in ordered)
        if result is None:
            analysis.untestable.append(factor)
        else:
            analysis.factors.append(result)
    if analysis.factors:
        q_values = false_discovery_control([f.p_value for f in analysis.factors], method="bh")
        for result, q_value in zip(analysis.factors, q_values, strict=True):
            result.q_value = float(q_value)
            result.significant = analysis.conclusive and result.q_value < ALPHA
    analysis.factors.sort(key=lambda f: (-f.cramers_v, f.p_value, f.factor))
    return analysis
