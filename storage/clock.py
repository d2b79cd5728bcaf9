"""The one UTC clock of the project.

The database stores naive UTC datetimes (``created``, ``state_changed``, ``updated``...),
so the current time is taken here once, in that form, for every layer above.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time as a naive UTC datetime (the form of every stored timestamp)."""
    return datetime.now(UTC).replace(tzinfo=None)
