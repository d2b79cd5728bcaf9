"""Tester profiles (``metabase_user``) and the check of their secrets.

Secrets are machine-generated tokens, not passwords, so a salted SHA-256 is the right
cost (a password KDF would cost ~80 ms a request here).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets as token_source
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from storage.tables import metabase_user

USER_PREFIX = "metabase:user:"


def resource_of(profile_guid: str) -> str:
    return USER_PREFIX + profile_guid.lower()


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + "\0" + secret).encode("utf-8")).hexdigest()


def new_secret_columns(secret: str) -> dict:
    salt = token_source.token_hex(16)
    return {"secret_salt": salt, "secret_hash": hash_secret(salt, secret)}


class Check(enum.Enum):
    UNKNOWN = "unknown"
    WRONG = "wrong"
    OK = "ok"
    ADOPTED = "adopted"  # a migrated profile took the first secret it presented


def find_user(conn: sa.Connection, profile_guid: str) -> sa.RowMapping | None:
    return (
        conn.execute(sa.select(metabase_user).where(metabase_user.c.resource == resource_of(profile_guid)))
        .mappings()
        .first()
    )


def check_secret(
    engine: sa.Engine, profile_guid: str, secrets: str | Sequence[str], verify: bool = True
) -> tuple[Check, sa.RowMapping | None]:
    """Check a profile's secret against each reading in ``secrets``, compared exactly (never
    repaired); a profile without a secret adopts the first reading."""
    readings = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    with engine.connect() as conn:
        user = find_user(conn, profile_guid)
    if user is None:
        return Check.UNKNOWN, None
    if not verify:
        return Check.OK, user
    if user["secret_hash"] is None:
        with engine.begin() as conn:
            adopted = conn.execute(
                metabase_user.update()
                .where(metabase_user.c.id == user["id"], metabase_user.c.secret_hash.is_(None))
                .values(**new_secret_columns(readings[0]))
            ).rowcount
        if adopted:
            return Check.ADOPTED, user
        return check_secret(engine, profile_guid, readings)
    matches = [hmac.compare_digest(hash_secret(user["secret_salt"], s), user["secret_hash"]) for s in readings]
    return (Check.OK if any(matches) else Check.WRONG), user


class Registered(enum.Enum):
    CREATED = "created"
    ADOPTED = "adopted"
    ALREADY = "already registered"


def register(engine: sa.Engine, profile_guid: str, fullname: str, email: str | None, secret: str | None) -> Registered:
    """Store a profile from ``/register``; never replace a stored secret."""
    resource = resource_of(profile_guid)
    secret_columns = new_secret_columns(secret) if secret else {}
    with engine.begin() as conn:
        user = find_user(conn, profile_guid)
        if user is not None and user["secret_hash"] is not None:
            return Registered.ALREADY
        if user is not None:
            conn.execute(
                metabase_user.update()
                .where(metabase_user.c.id == user["id"])
                .values(fullname=fullname[:255], email=(email or None) and email[:255], **secret_columns)
            )
            return Registered.ADOPTED
    try:
        with engine.begin() as conn:
            conn.execute(
                metabase_user.insert().values(
                    resource=resource, fullname=fullname[:255], email=(email or None) and email[:255], **secret_columns
                )
            )
    except IntegrityError:
        return Registered.ALREADY
    return Registered.CREATED


def reset_secret(engine: sa.Engine, profile_guid: str, secret: str | None = None) -> bool:
    """Operator command: set a new secret, or clear it (``None``) so the next one presented is adopted."""
    values = new_secret_columns(secret) if secret else {"secret_salt": None, "secret_hash": None}
    with engine.begin() as conn:
        result = conn.execute(
            metabase_user.update().where(metabase_user.c.resource == resource_of(profile_guid)).values(**values)
        )
    return result.rowcount > 0
