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


def split_assignment(line: str) -> tuple[str, str, int] | None:
    """``(name, value, where the value starts in line)`` of an indented ``NAME = value``
    line, or None. The value is everything after ``= `` (it may hold ``=`` itself:
    ``PERL_MM_OPT = INSTALL_BASE=/x``); trailing blanks are dropped."""
    if not line or not line[0].isspace():
        return None
    stripped = line.strip()
    equals = stripped.find("=")
    if equals < 0:
        return None
    name = stripped[:equals].strip()
    if not name:
        return None
    start = equals + 1
    if stripped[start : start + 1] == " ":
        start += 1
    lead = len(line) - len(line.lstrip())
    return name, stripped[start:].rstrip(), lead + start


def environment_variable(line: str) -> tuple[str, str, int] | None:
    """An environment variable line (a name without blanks): name, value, value's offset."""
    found = split_assignment(line)
    if found is None or len(found[0].split(None, 1)) != 1:
        return None
    return found


def special_variables(line: str) -> list[tuple[str, str]]:
    """The special variables of one line, named the CPAN::Reporter way (see the module)."""
    found = split_assignment(line)
    if found is None:
        return []
    name, value, _ = found
    label, colon, rest = name.partition(":")
    if colon and rest.strip().startswith("$") and not label.startswith("$"):
        name = rest.strip()  # CPANPLUS: "UID:  $<"
    if "/" in name and name.startswith("$"):  # CPAN::Reporter: "$UID/$EUID = 1005 / 1005"
        names = [n.strip() for n in name.split("/")]
        values = [v.strip() for v in value.split("/")]
        if len(names) == len(values) and all(n.startswith("$") for n in names):
            return [(SPECIAL_NAMES.get(n, n), v) for n, v in zip(names, values, strict=True)]
    if len(name.split(None, 1)) != 1:
        return []
    return [(SPECIAL_NAMES.get(name, name), value)]
