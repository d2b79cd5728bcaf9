"""``NAME = value`` lines: environment variables and Perl's special variables.

Special variables are keyed as CPAN::Reporter prints them (``$^X``, ``$UID``, ``$GID``...),
whatever the reporter wrote:

- CPAN::Reporter: ``$^X = ...``, ``$UID/$EUID = 1005 / 1005`` (two variables), ``$GID = ...``;
- CPANPLUS: ``Perl: $^X = ...``, ``UID:  $<  = 1001``, ``GID:  $(  = 10 10``;
- App::cpanminus::reporter: ``EXECUTABLE_NAME = ...``, ``UID = 1003``, ``EGID = ...``.

The MSWin32 diagnostics of the same list (``Win32::GetOSName = Win7``) keep their names.
"""

from __future__ import annotations

SPECIAL_NAMES = {
    "$<": "$UID",
    "$>": "$EUID",
    "$(": "$GID",
    "$)": "$EGID",
    "$0": "$0",
    "EXECUTABLE_NAME": "$^X",
    "UID": "$UID",
    "EUID": "$EUID",
    "GID": "$GID",
    "EGID": "$EGID",
    "REAL_USER_ID": "$UID",
    "EFFECTIVE_USER_ID": "$EUID",
    "REAL_GROUP_ID": "$GID",
    "EFFECTIVE_GROUP_ID": "$EGID",
}


def split_assignment(line: str) -> tuple[str, str] | None:
    """``(name, value)`` of an indented ``NAME = value`` line, or None.

    The value is everything after ``= `` (it may hold ``=`` itself: ``PERL_MM_OPT =
    INSTALL_BASE=/x``); trailing blanks are dropped (reporters pad nothing, CRs are gone)."""
    if not line or not line[0].isspace():
        return None
    name, equals, value = line.strip().partition("=")
    name = name.strip()
    if not equals or not name:
        return None
    if value.startswith(" "):
        value = value[1:]
    return name, value.rstrip()


def environment_variable(line: str) -> tuple[str, str] | None:
    """An environment variable line (a name without blanks), or None."""
    found = split_assignment(line)
    if found is None or any(c.isspace() for c in found[0]):
        return None
    return found


def special_variables(line: str) -> list[tuple[str, str]]:
    """The special variables of one line, named the CPAN::Reporter way (see the module)."""
    found = split_assignment(line)
    if found is None:
        return []
    name, value = found
    label, colon, rest = name.partition(":")
    if colon and rest.strip().startswith("$") and not label.startswith("$"):
        name = rest.strip()  # CPANPLUS: "UID:  $<"
    if "/" in name and name.startswith("$"):  # CPAN::Reporter: "$UID/$EUID = 1005 / 1005"
        names = [n.strip() for n in name.split("/")]
        values = [v.strip() for v in value.split("/")]
        if len(names) == len(values) and all(n.startswith("$") for n in names):
            return [(SPECIAL_NAMES.get(n, n), v) for n, v in zip(names, values, strict=True)]
    if any(c.isspace() for c in name):
        return []
    return [(SPECIAL_NAMES.get(name, name), value)]
