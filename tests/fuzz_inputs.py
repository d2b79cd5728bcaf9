"""Fuzz inputs: the real client's captured requests, mutated as hostile clients would.

A captured body is read into a tree whose JSON-in-a-string layers (``content`` of the
report, of each fact) are kept as :class:`Nested` nodes, so that a mutation can reach any
layer and the tree is written back with the same nesting. The mutations are those of
issue 20: nested JSON strings, wrong types, missing and extra facts, huge numbers, lone
surrogates, NUL bytes, invalid UTF-8, Latin-1 text, deep nesting, enormous strings near
the body limit, and wrong ``cpan:///distfile/`` resources. Hypothesis draws the cases:
which seed, and a PRNG (``st.randoms``) that picks the mutations, where and with what at
the stated odds (hypothesis' own draws favour their bounds: "near the limit" came up in
half the cases).
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from hypothesis import strategies as st

from schemas.metabase import decode_report
from schemas.translate import metabase_to_v3
from tests import captures

FUZZ_PROFILE = "f0220000-0000-4000-8000-00000000f022"
FUZZ_SECRET = "fuzz-s3cr3t"
OTHER_PROFILE = "f0220000-0000-4000-8000-0000000000ff"
"""A second profile, always sent with a wrong secret (its 401s and 429s do not touch FUZZ_PROFILE)."""


@dataclass
class Nested:
    """A JSON value sent as a JSON string (the Metabase layers)."""

    value: object


@dataclass
class Raw:
    """JSON text written as it is (deep nesting, numbers Python would not write)."""

    text: str


def encode(node, ascii_only: bool = True) -> str:
    """Write a tree back to JSON text, each :class:`Nested` layer as a JSON string."""
    if isinstance(node, Nested):
        return json.dumps(encode(node.value, ascii_only), ensure_ascii=ascii_only)
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, dict):
        items = (json.dumps(str(k), ensure_ascii=ascii_only) + ":" + encode(v, ascii_only) for k, v in node.items())
        return "{" + ",".join(items) + "}"
    if isinstance(node, list):
        return "[" + ",".join(encode(v, ascii_only) for v in node) + "]"
    return json.dumps(node, ensure_ascii=ascii_only)


def _layered(value):
    """A decoded value with each string that holds a JSON object or array as Nested."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return Nested(_layered(json.loads(value)))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _layered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_layered(v) for v in value]
    return value


@dataclass
class Seed:
    """One request to mutate: which route, and its body as a tree."""

    route: str  # "legacy", "v3" or "register"
    tree: object
    origin: str


def _as_fuzz_profile(text: str, profile_guid: str) -> str:
    return text.replace(captures.PROFILE_GUID, FUZZ_PROFILE).replace(profile_guid, FUZZ_PROFILE)


def _v3_document(body: bytes) -> dict:
    """The v3 document a client would POST for a captured Metabase submission."""
    doc = metabase_to_v3(decode_report(body), datetime(2026, 1, 1), "Fuzz Tester", None)
    return {k: v for k, v in doc.items() if k not in ("id", "created", "metabase")}


def seeds() -> list[Seed]:
    """Every captured submission (legacy, and as a v3 document) and registration."""
    found = []
    for scenario in captures.scenarios():
        for recorded in captures.load(scenario):
            if recorded.method != "POST":
                continue
            outer = json.loads(recorded.body)
            if "/submit/" in recorded.path:
                creator = outer["metadata"]["core"].get("creator", "")
                body = _as_fuzz_profile(recorded.body.decode(), creator.rpartition(":")[2])
                found.append(Seed("legacy", _layered(json.loads(body)), f"{scenario}/{recorded.number}"))
                found.append(Seed("v3", _v3_document(body.encode()), f"{scenario}/{recorded.number}"))
            elif recorded.path.endswith("/register"):
                found.append(Seed("register", _layered(outer), f"{scenario}/{recorded.number}"))
    return found


# -- where a mutation applies ----------------------------------------------------------


def paths(node, prefix=()) -> list[tuple]:
    """Every place in the tree (keys and indexes; a Nested layer is the step ``None``)."""
    found = [prefix]
    if isinstance(node, Nested):
        found += paths(node.value, (*prefix, None))
    elif isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def get(node, path):
    for step in path:
        node = node.value if step is None else node[step]
    return node


def put(tree, path, value):
    """``tree`` with the node at ``path`` replaced (the root itself when path is empty)."""
    if not path:
        return value
    parent = get(tree, path[:-1])
    if path[-1] is None:
        parent.value = value
    else:
        parent[path[-1]] = value
    return tree


def remove(tree, path):
    parent = get(tree, path[:-1]) if path else None
    if isinstance(parent, dict | list) and path[-1] is not None:
        del parent[path[-1]]
    return tree


def set_report_guid(tree, guid: str):
    """Give a legacy submission a fresh report GUID (a new client run), where it has one."""
    with contextlib.suppress(KeyError, TypeError):
        tree["metadata"]["core"]["guid"] = guid
    return tree


def set_profile_guid(tree, guid: str):
    """Give a registration a fresh profile GUID in every resource, where it has them."""
    for path in paths(tree):
        if path and path[-1] == "resource" and isinstance(get(tree, path), str):
            put(tree, path, "metabase:user:" + guid)
    return tree


# -- the mutations ---------------------------------------------------------------------

LONE_SURROGATES = ["\ud83d", "\udc2a", "\udfff", "x\ud800y"]
LATIN1_TEXTS = ["Jöhn Dœ café", "caf\u00c3\u00a9", "Ä\u00ff\u0080", "naïve"]
WRONG_RESOURCES = [
    "cpan:///distfile/",
    "cpan:///distfile/ATESTER",
    "cpan:///distfile/ATESTER/",
    "cpan:///distfile/ATESTER/Foo-Bar",
    "cpan:///distfile/ATESTER/Foo-Bar-1.23.exe",
    "cpan:///distfile/../../etc/passwd-1.0.tar.gz",
    "cpan:///distfile/A/Ü-1.0.tar.gz",
    "cpan:///distfile/ATESTER/Foo-Bar-1.23.tar.gz/extra",
    "cpan:///dist/ATESTER/Foo-Bar-1.23.tar.gz",
    "CPAN:///DISTFILE/ATESTER/Foo-Bar-1.23.tar.gz",
    "cpan:///distfile/ATESTER/" + "Long-" * 100 + "1.0.tar.gz",
    "cpan:///distfile/ATESTER/Foo\u0000Bar-1.0.tar.gz",
    "cpan:///distfile/ATESTER/Foo-Bar-\ud83d.tar.gz",
    "",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just([]),
    st.just({}),
    st.sampled_from([10**400, -(10**30), 2**63, 2**64 + 1, 1e308, -1e-320]),
)
HUGE_NUMBERS = st.sampled_from(
    [Raw("1" * 5000), Raw("1e999999"), Raw("-1e400"), 10**400, 2**64, Raw("0." + "0" * 4000 + "1"), Raw("NaN")]
)


def deep(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


def _text_mutation(draw, rng, original: str) -> str:
    kind = rng.choice(["surrogate", "nul", "latin1", "text"])
    at = rng.randint(0, len(original))
    insert = {
        "surrogate": lambda: rng.choice(LONE_SURROGATES),
        "nul": lambda: "\u0000",
        "latin1": lambda: rng.choice(LATIN1_TEXTS),
        "text": lambda: draw(st.text(max_size=12)),
    }[kind]()
    return original[:at] + insert + original[at:]


MUTATIONS = {
    "text": 30,  # a lone surrogate, a NUL, Latin-1 text or any text inserted in a string
    "extra key": 10,
    "facts": 10,  # a fact dropped, duplicated, added, retyped, or the facts reordered
    "wrong type": 8,
    "missing key": 8,
    "nested JSON string": 6,  # a value sent as a JSON string, or a JSON string unwrapped
    "huge number": 6,
    "wrong resource": 6,
    "deep nesting": 4,
    "latin-1 body": 3,
}


@st.composite
def mutated(draw, seed: Seed, limit: int):
    """A mutated body (bytes) of ``seed``, and the names of the mutations applied: none
    for a quarter of the cases, one or two for the others (weights: :data:`MUTATIONS`)."""
    rng = draw(st.randoms(use_true_random=True))  # a plain PRNG seeded by hypothesis: even odds
    tree = copy.deepcopy(seed.tree)
    if seed.route == "legacy":
        set_report_guid(tree, str(uuid.uuid4()))
    elif seed.route == "register":
        set_profile_guid(tree, str(uuid.uuid4()))
    applied = []
    encoding = "utf-8"
    for _ in range(rng.choices([0, 1, 2], weights=[25, 55, 20])[0]):
        name = rng.choices(list(MUTATIONS), weights=list(MUTATIONS.values()))[0]
        places = paths(tree)
        if name == "text":
            places = [p for p in places if isinstance(get(tree, p), str)] or places
        path = rng.choice(places)
        node = get(tree, path)
        if name == "nested JSON string":
            tree = put(tree, path, node.value if isinstance(node, Nested) else Nested(node))
        elif name == "wrong type":
            tree = put(tree, path, draw(SCALARS))
        elif name == "missing key":
            tree = remove(tree, path)
        elif name == "extra key":
            if isinstance(node, dict):
                node[draw(st.text(max_size=10))] = draw(SCALARS)
        elif name == "facts":
            tree = _mutate_facts(draw, tree)
        elif name == "huge number":
            tree = put(tree, path, draw(HUGE_NUMBERS))
        elif name == "text" and isinstance(node, str):
            tree = put(tree, path, _text_mutation(draw, rng, node))
        elif name == "deep nesting":
            tree = put(tree, path, deep(rng.choice([50, 500, 5000, 100_000])))
        elif name == "wrong resource":
            tree = _put_resources(tree, rng.choice(WRONG_RESOURCES))
        elif name == "latin-1 body":
            encoding = "latin-1"
        applied.append(name)
    # The Perl client writes ASCII JSON (\u escapes); other clients raw UTF-8.
    ascii_only = encoding == "utf-8" and rng.random() < 0.75
    if rng.random() < 0.015:  # rare: each costs a body of about the limit
        tree, applied = _near_limit(rng, tree, limit), [*applied, "near the limit"]
    text = encode(tree, ascii_only=ascii_only)
    body = text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
    if rng.random() < 0.03:
        at = rng.randint(0, len(body))
        body = body[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf"]) + body[at:]
        applied.append("invalid UTF-8 / NUL byte")
    return body, tuple(applied)


def _mutate_facts(draw, tree):
    facts = get(tree, ("content", None)) if _has(tree, ("content", None)) else None
    if not isinstance(facts, list) or not facts:
        return tree
    how = draw(st.sampled_from(["drop", "duplicate", "extra", "retype", "reorder"]))
    index = draw(st.integers(0, len(facts) - 1))
    if how == "drop":
        del facts[index]
    elif how == "duplicate":
        facts.insert(index, copy.deepcopy(facts[index]))
    elif how == "extra":
        extra = copy.deepcopy(facts[index])
        if isinstance(extra, dict) and _has(extra, ("metadata", "core", "type")):
            extra["metadata"]["core"]["type"] = draw(st.sampled_from(["CPAN-Testers-Fact-Unknown", "", "x" * 300]))
        facts.append(extra)
    elif how == "retype" and _has(facts[index], ("metadata", "core", "type")):
        facts[index]["metadata"]["core"]["type"] = draw(st.sampled_from(["CPAN-Testers-Report", "Nope", 5]))
    else:
        facts.reverse()
    return tree


def _has(node, path) -> bool:
    try:
        get(node, path)
        return True
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def _put_resources(tree, resource: str):
    for path in paths(tree):
        if path and path[-1] == "resource":
            put(tree, path, resource)
    return tree


def _near_limit(rng, tree, limit: int):
    """The longest string of the tree grown so that the body is within a few bytes of the
    limit, on either side of it."""
    strings = [p for p in paths(tree) if isinstance(get(tree, p), str)]
    if not strings:
        return tree
    path = max(strings, key=lambda p: len(get(tree, p)))
    size = len(encode(tree).encode())
    grow = limit - size + rng.randint(-64, 64)
    if grow > 0:
        tree = put(tree, path, get(tree, path) + "x" * grow)
    return tree


def cases(seed_list: list[Seed], limit: int):
    """A strategy of ``(seed, body, mutations)``: a quarter of the cases unmutated."""
    return st.sampled_from(seed_list).flatmap(lambda s: mutated(s, limit).map(lambda m: (s, *m)))
