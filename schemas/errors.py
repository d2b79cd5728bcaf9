"""Domain errors raised where bad input is found, turned into each API's error shape."""

from __future__ import annotations


class InvalidReport(ValueError):
    """A submission that cannot be accepted; ``path`` points at the offending input."""

    def __init__(self, message: str, path: str = "/"):
        super().__init__(message)
        self.message = message
        self.path = path
