"""Read the HTTP Basic credentials the Metabase clients send with every request."""

from __future__ import annotations

import base64
import binascii

from flask import Request

from intake.pipeline import Credentials


def basic_credentials(request: Request) -> Credentials | None:
    """``Authorization: Basic base64(<profile guid>:<secret>)``; None when absent or unreadable."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    guid, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return Credentials(profile_guid=guid.strip(), secret=secret)
