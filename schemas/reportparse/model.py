"""What the report-text parser extracts: one :class:`ParsedReport` per report text."""

from __future__ import annotations

from dataclasses import dataclass, field

MISSING = "n/a"
"""The ``have`` of a prerequisite or toolchain module that is not installed (CPAN::Reporter's
spelling; report-prereqs' ``missing`` and CPANPLUS's ``! Foo 0 0`` become it too)."""


@dataclass(frozen=True)
class Prerequisite:
    """One prerequisite as the report lists it: ``need`` and ``have`` as printed, except
    ``any`` (need) becomes ``0`` and a module not installed has ``have`` ``n/a``."""

    phase: str
    name: str
    need: str
    have: str


PHASE_ORDER = {"configure": 0, "build": 1, "test": 2, "runtime": 3, "requires": 4}


def prerequisite_order(p: Prerequisite) -> tuple:
    """The order prerequisites are listed in: by phase (configure, build, test, runtime,
    CPANPLUS's all-phase list, then the others), then by name ignoring case."""
    return (PHASE_ORDER.get(p.phase, 9), p.phase, p.name.casefold(), p.name)


@dataclass(frozen=True)
class FailedFile:
    """A test file the harness summary lists as failed, with the numbers of its failed
    tests as printed (``"3, 5-7"``; empty when it failed without a failed test, e.g. a
    bad plan or a non-zero exit)."""

    file: str
    failed: str = ""


@dataclass
class ParsedReport:
    """Everything found in one report text. ``None`` / empty means "not in the text"."""

    user_agent: str | None = None
    prerequisites: list[Prerequisite] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    environment_spans: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    """Where each environment variable's value is in the parsed text (start, end)."""
    perl_variables: dict[str, str] = field(default_factory=dict)
    toolchain: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    build_offset: int | None = None
    """Where the ``perl -V`` summary starts in the parsed text; it runs to the end."""
    tests: int | None = None
    failures: int | None = None
    skipped: int | None = None
    todo_pass: int | None = None
    todo_fail: int | None = None
    duration: float | None = None
    failed_files: list[FailedFile] = field(default_factory=list)
