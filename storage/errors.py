"""The exceptions that mean "storage cannot answer now", shared by every surface.

The intake spools a submission on :data:`DATABASE_UNAVAILABLE`; the read side and the
APIs turn :class:`Unavailable` into a JSON 503.
"""

from __future__ import annotations

import sqlalchemy.exc as sa_exc

DATABASE_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
"""Errors that mean "the database cannot take this now" (a submission is then spooled)."""


class Unavailable(Exception):
    """503: the storage behind a request cannot take or give it now (for a submission:
    neither the database nor the spool)."""
