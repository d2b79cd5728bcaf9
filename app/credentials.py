"""Read the HTTP Basic credentials the Metabase clients send with every request.

Our own parser rather than werkzeug's: werkzeug decodes Basic credentials as UTF-8 only
and returns nothing otherwise, while the Perl client (HTTP::Tiny) sends the Latin-1 bytes
of secrets holding characters below U+0100 (capture 23-non-ascii-secret).
"""

from __future__ import annotations

import base64
import binascii
import contextlib

from flask import Request

from intake.pipeline import Credentials


def secret_readings(raw: bytes) -> tuple[str, ...]:
    """Every text the secret bytes can stand for: UTF-8 when they are valid UTF-8, then Latin-1.

    A secret is compared, never repaired: a submission is accepted when any reading equals
    the registered secret. Latin-1 reads every byte string, so there is always one.
    """
    readings = []
    with contextlib.suppress(UnicodeDecodeError):
        readings.append(raw.decode("utf-8"))
    latin1 = raw.decode("latin-1")
    if latin1 not in readings:
        readings.append(latin1)
    return tuple(readings)


def basic_credentials(request: Request) -> Credentials | None:
    """``Authorization: Basic base64(<profile guid>:<secret>)``; None when absent or unreadable."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=False)
    except (binascii.Error, ValueError):
        return None
    guid, sep, secret = decoded.partition(b":")
    if not sep:
        return None
    return Credentials(profile_guid=guid.decode("latin-1").strip(), secrets=secret_readings(secret))
