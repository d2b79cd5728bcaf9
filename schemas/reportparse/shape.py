"""Parsed facts in the v3 report format, and their merge into a stored document.

Objects are listed by name (the configuration in ``perl -V``'s order), whichever way
the facts were read (parsed now or from the tables), so an answer never changes shape.

The v3 fields filled (``cpantesters-api`` ``share/v3.json``):

- ``distribution.prerequisites[]`` ``{phase, name, need, have}``
- ``environment.user_agent``, ``environment.toolchain``
- ``environment.system.variables`` (environment variables)
- ``environment.language.variables`` (special variables, ``$^X``, ``$UID``...),
  ``environment.language.build`` (the ``perl -V`` summary), ``environment.language.commit_id``
- ``result.tests``, ``failures``, ``skipped``, ``todo {pass, fail}``, ``duration``

and two of ours, which the v3 format has no place for (its schemas allow extra keys):
``environment.language.config`` (the key ``perl -V`` fields: osname, osvers, archname,
useithreads, usemultiplicity, use64bitint, use64bitall, uselongdouble, cc, gccversion,
optimize) and ``result.failed_files[]`` ``{file, failed}``.

A field the submitter sent itself is never replaced (:func:`merge_parsed`).
"""

from __future__ import annotations

import copy

from schemas.reportparse.model import ParsedReport
from schemas.reportparse.perl_config import CONFIG_KEYS

OUTPUT_PARTS = ("configure", "build", "test", "install")


def report_text(doc: dict) -> str:
    """The text a v3 document's report is parsed from: ``result.output.uncategorized``
    (every Metabase report), else its ``configure``/``build``/``test``/``install`` parts."""
    output = (doc.get("result") or {}).get("output") if isinstance(doc, dict) else None
    if not isinstance(output, dict):
        return ""
    text = output.get("uncategorized")
    if isinstance(text, str) and text:
        return text
    return "\n".join(part for key in OUTPUT_PARTS if isinstance(part := output.get(key), str) and part)


def build_text(text: str, offset: int | None) -> str | None:
    """The ``perl -V`` summary of ``text`` starting at ``offset`` (to the end)."""
    if offset is None or offset < 0 or offset >= len(text):
        return None
    return text[offset:].rstrip() or None


def v3_fields(parsed: ParsedReport, text: str) -> dict[tuple[str, ...], object]:
    """The v3 fields ``parsed`` fills, by path (only those it found)."""
    fields: dict[tuple[str, ...], object] = {}

    def put(path: tuple[str, ...], value) -> None:
        if value is not None and value != {} and value != []:
            fields[path] = value

    put(("environment", "user_agent"), parsed.user_agent)
    put(("environment", "toolchain"), dict(sorted(parsed.toolchain.items())))
    put(("environment", "system", "variables"), dict(sorted(parsed.environment.items())))
    put(("environment", "language", "variables"), dict(sorted(parsed.perl_variables.items())))
    put(("environment", "language", "build"), build_text(text, parsed.build_offset))
    put(("environment", "language", "commit_id"), parsed.config.get("commit_id"))
    put(("environment", "language", "config"), {k: parsed.config[k] for k in CONFIG_KEYS if k in parsed.config})
    put(
        ("distribution", "prerequisites"),
        [{"phase": p.phase, "name": p.name, "need": p.need, "have": p.have} for p in parsed.prerequisites],
    )
    put(("result", "tests"), parsed.tests)
    put(("result", "failures"), parsed.failures)
    put(("result", "skipped"), parsed.skipped)
    if parsed.todo_pass is not None or parsed.todo_fail is not None:
        put(("result", "todo"), {"pass": parsed.todo_pass or 0, "fail": parsed.todo_fail or 0})
    put(("result", "duration"), parsed.duration)
    failed = sorted(parsed.failed_files, key=lambda f: f.file)
    put(("result", "failed_files"), [{"file": f.file, "failed": f.failed} for f in failed])
    return fields


def merge_parsed(doc: dict, fields: dict[tuple[str, ...], object]) -> dict:
    """``doc`` with ``fields`` added where the document has no value of its own.

    The stored document is not changed: the objects on the way to a new field are copied.
    A path through something that is not an object (a client's odd document) is skipped.
    """
    if not fields:
        return doc
    merged = dict(doc)
    copied: set[tuple[str, ...]] = {()}
    for path, value in fields.items():
        node = merged
        for depth, key in enumerate(path[:-1]):
            child = node.get(key)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                break
            here = path[: depth + 1]
            if here not in copied:
                child = dict(child)
                copied.add(here)
            node[key] = child
            node = child
        else:
            if node.get(path[-1]) is None:
                node[path[-1]] = copy.deepcopy(value)
    return merged


def enrich_document(doc: dict, parsed: ParsedReport) -> dict:
    """``doc`` with the fields parsed from its own text (see :func:`merge_parsed`)."""
    return merge_parsed(doc, v3_fields(parsed, report_text(doc)))


def with_facts(doc: dict, parsed: ParsedReport | None = None) -> dict:
    """The v3 answer for a stored document: its stored facts merged in, or, for a report
    not enriched yet (or not in our tables: the legacy fallback), its text parsed now."""
    if parsed is None:
        from schemas.reportparse import parse_report_text

        parsed = parse_report_text(report_text(doc))
    return enrich_document(doc, parsed)
