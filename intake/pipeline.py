"""The submission pipeline: decode, authenticate, translate, store, then queue.

Used by the web app for every submission and by the spool drainer for submissions that
arrived while the database was away, so both take exactly the same path. A submission
is durable when :meth:`SubmissionPipeline.submit_metabase` or
:meth:`SubmissionPipeline.submit_v3` returns: committed to ``test_report``, or fsynced to
the spool.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

import cachetools
import redis
import sqlalchemy as sa

from intake.spool import Spool
from queueing import counters
from queueing.contract import JOB_TIMEOUT, QUEUE_NAME, put_report_job
from schemas.errors import InvalidReport
from schemas.metabase import REPORT_TYPE, canonical_sha256, decode_report, is_guid
from schemas.translate import clean_document, index_columns, iso_z, metabase_to_v3
from schemas.v3 import load_new_report
from storage import users
from storage.clock import utc_now
from storage.errors import DATABASE_UNAVAILABLE, Unavailable
from storage.outage import REDIS_ERRORS, Breaker, Outage
from storage.reports import Stored, store_report

logger = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 60
"""How long a successful secret check is remembered (an operator's reset applies after this)."""

AUTH_CACHE_SIZE = 10_000
"""Profiles whose last successful check a process remembers (the least recent go first)."""

DATABASE_BACKOFF_SECONDS = 2.0
"""After a database failure, spool directly for this long instead of waiting on timeouts."""


class Unauthorized(Exception):
    """401: unknown profile, or wrong secret."""


class WrongSecret(Unauthorized):
    """401 for a known profile whose secret does not match (what the auth throttle counts)."""


class Forbidden(Exception):
    """403: the report claims another profile than the one that authenticated."""


class Conflict(Exception):
    """409: a different submission under a GUID we already hold."""


class Outcome(enum.Enum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    SPOOLED = "spooled"


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic ``<profile guid>:<secret>`` as the clients send it.

    ``secrets`` holds every reading of the secret bytes (UTF-8 when valid, then Latin-1):
    the Perl client sends Latin-1 bytes, other clients UTF-8, and either may match.
    """

    profile_guid: str
    secrets: tuple[str, ...]

    def to_record(self) -> list[str]:
        """The JSON form kept in a spool file."""
        return [self.profile_guid, *self.secrets]

    @classmethod
    def from_record(cls, record: list[str]) -> Credentials:
        """Read :meth:`to_record`'s form (also the ``[guid, secret]`` of older spool files)."""
        return cls(profile_guid=record[0], secrets=tuple(record[1:]))


@dataclass(frozen=True)
class Receipt:
    guid: str
    outcome: Outcome
    queued: bool = False


@dataclass(frozen=True)
class Profile:
    guid: str
    fullname: str | None
    email: str | None


def receipt_time() -> datetime:
    """Receipt time: naive UTC, second precision (the precision of ``created``)."""
    return utc_now().replace(microsecond=0)


class SubmissionPipeline:
    """Everything a submission needs: the database, Redis, the spool and the auth policy."""

    def __init__(
        self,
        engine: sa.Engine,
        redis_connection: redis.Redis,
        spool: Spool,
        *,
        auth_enabled: bool = True,
        queue_name: str = QUEUE_NAME,
        job_timeout: int = JOB_TIMEOUT,
        redis_outage: Outage | None = None,
    ):
        self.engine = engine
        self.redis = redis_connection
        self.spool = spool
        self.auth_enabled = auth_enabled
        self.queue_name = queue_name
        self.job_timeout = job_timeout
        # While Redis is away, submissions are not slowed by a try each: one try per
        # back-off step (logged once per outage); the others stay pending for the sweeper.
        self.redis_outage = redis_outage or Outage("redis (enqueue)", logger)
        self._auth_cache = cachetools.TTLCache(
            maxsize=AUTH_CACHE_SIZE, ttl=AUTH_CACHE_SECONDS
        )  # guid -> (digest, profile)
        self._lock = threading.Lock()
        # After a real database failure, submissions go straight to the spool for a while.
        self.database_breaker = Breaker(DATABASE_BACKOFF_SECONDS)

    # -- authentication -------------------------------------------------------------

    def authenticate(self, credentials: Credentials | None) -> Profile:
        """The profile behind the credentials, or :class:`Unauthorized`."""
        if credentials is None or not is_guid(credentials.profile_guid):
            guid = credentials.profile_guid if credentials else ""
            raise Unauthorized(f"User {guid} unrecognized")
        guid = credentials.profile_guid.lower()
        digest = hashlib.sha256("\0".join(credentials.secrets).encode("utf-8")).hexdigest()
        with self._lock:
            cached = self._auth_cache.get(guid)
        if cached and cached[0] == digest:
            return cached[1]
        check, user = users.check_secret(self.engine, guid, credentials.secrets, verify=self.auth_enabled)
        if check is users.Check.UNKNOWN:
            raise Unauthorized(f"User {guid} unrecognized")
        if check is users.Check.WRONG:
            raise WrongSecret(f"Invalid secret for user {guid}")
        if check is users.Check.ADOPTED:
            logger.info("profile adopted its first secret profile=%s", guid)
        profile = Profile(guid=guid, fullname=user["fullname"], email=user["email"])
        with self._lock:
            self._auth_cache[guid] = (digest, profile)
        return profile

    # -- submissions ----------------------------------------------------------------

    def submit_metabase(
        self,
        body: bytes,
        credentials: Credentials | None,
        url_type: str = REPORT_TYPE,
        received: datetime | None = None,
        from_spool: bool = False,
    ) -> Receipt:
        """Accept a ``POST submit/CPAN-Testers-Report`` body (already durable on return)."""
        report = decode_report(body, url_type)
        received = received or receipt_time()

        def build_row() -> dict:
            profile = self.authenticate(credentials)
            if report.creator_guid != profile.guid:
                raise Forbidden(
                    f"report creator {report.core.get('creator')!r} is not the authenticated user {profile.guid}"
                )
            doc = metabase_to_v3(report, received, profile.fullname, profile.email)
            return self._row(report.guid, doc, received, report.sha256, profile.guid)

        record = {"kind": "metabase", "url_type": url_type, "body": body.decode("utf-8")}
        return self._store(report.guid, build_row, record, credentials, received, from_spool)

    def submit_v3(
        self,
        data,
        credentials: Credentials | None,
        received: datetime | None = None,
        from_spool: bool = False,
        guid: str | None = None,
    ) -> Receipt:
        """Accept a ``POST /v3/report`` document (already durable on return)."""
        doc = load_new_report(data)
        guid = (guid or str(uuid.uuid4())).lower()
        received = received or receipt_time()

        def build_row() -> dict:
            profile = self.authenticate(credentials)
            stored = clean_document({k: v for k, v in doc.items() if k not in ("id", "created")})
            stored = {"id": guid, "created": iso_z(received), **stored}
            return self._row(guid, stored, received, canonical_sha256(doc), profile.guid)

        record = {"kind": "v3", "guid": guid, "document": doc}
        return self._store(guid, build_row, record, credentials, received, from_spool)

    def _row(self, guid: str, doc: dict, received: datetime, sha256: str, profile_guid: str) -> dict:
        return {
            "guid": guid,
            "created": received,
            "state": "pending",
            "creator": users.resource_of(profile_guid),
            "submission_sha256": sha256,
            "report": doc,
            **index_columns(doc),
        }

    def _store(self, guid, build_row, record, credentials, received, from_spool) -> Receipt:
        if not from_spool and self.database_breaker.open:
            # Within the back-off of the last real failure. Only a real failure starts a new
            # back-off: were these submissions to extend it, a steady stream would keep the
            # app spooling long after the database came back, until the spool filled up.
            return self._spool(guid, record, credentials, received, "database recently unreachable")
        try:
            row = build_row()
            stored = store_report(self.engine, row)
        except DATABASE_UNAVAILABLE as exc:
            if from_spool:
                raise
            self.database_breaker.trip()
            return self._spool(guid, record, credentials, received, exc)
        if stored is Stored.CONFLICT:
            raise Conflict(f"report {guid} already exists with different content")
        if stored is Stored.DUPLICATE:
            return Receipt(guid, Outcome.DUPLICATE)
        return Receipt(guid, Outcome.CREATED, self._enqueue(guid))

    def _enqueue(self, guid: str) -> bool:
        """Queue the report's job after its commit; False leaves it to the sweeper."""
        with self._lock:
            if not self.redis_outage.due():
                return False
            if self.redis_outage.down:  # this request probes; the others meanwhile do not wait
                self.redis_outage.next_try = self.redis_outage.clock() + self.redis_outage.cap
        try:
            put_report_job(self.redis, guid, self.queue_name, count_as=counters.SUBMITTED, timeout=self.job_timeout)
        except REDIS_ERRORS as exc:
            with self._lock:
                self.redis_outage.failed(exc)
            logger.debug("enqueue failed guid=%s; the sweeper will queue it", guid)
            return False
        except Exception as exc:  # any other Redis answer: the sweeper covers it too
            logger.warning("enqueue failed guid=%s error=%s; the sweeper will queue it", guid, exc)
            return False
        if self.redis_outage.down:
            with self._lock:
                self.redis_outage.recovered()
        return True

    def _spool(self, guid, record, credentials, received, exc) -> Receipt:
        logger.warning("database unavailable, spooling guid=%s error=%s", guid, str(exc).splitlines()[0][:200])
        record = {
            **record,
            "received": received.isoformat(),
            "credentials": credentials.to_record() if credentials else None,
        }
        try:
            self.spool.put(record)
        except OSError as spool_exc:
            logger.error("spool write failed guid=%s error=%s", guid, spool_exc)
            raise Unavailable("report storage is unavailable, please try again later") from spool_exc
        return Receipt(guid, Outcome.SPOOLED)

    # -- the spool drainer ----------------------------------------------------------

    def drain_spool(self) -> dict:
        """Move spooled submissions into the database; stop at the first database failure."""
        counts = {"drained": 0, "rejected": 0, "remaining": 0}
        paths = self.spool.pending()
        for index, path in enumerate(paths):
            try:
                record = self.spool.load(path)
                credentials = Credentials.from_record(record["credentials"]) if record.get("credentials") else None
                received = datetime.fromisoformat(record["received"])
                if record["kind"] == "metabase":
                    receipt = self.submit_metabase(
                        record["body"].encode("utf-8"), credentials, record["url_type"], received, from_spool=True
                    )
                else:
                    receipt = self.submit_v3(
                        record["document"], credentials, received, from_spool=True, guid=record["guid"]
                    )
            except DATABASE_UNAVAILABLE as exc:
                logger.debug("spool drain paused, database unavailable: %s", str(exc).splitlines()[0][:200])
                counts["remaining"] = len(paths) - index
                return counts
            except (InvalidReport, Unauthorized, Forbidden, Conflict, ValueError, KeyError) as exc:
                self.spool.reject(path, f"{type(exc).__name__}: {exc}")
                counts["rejected"] += 1
                continue
            self.spool.remove(path)
            counts["drained"] += 1
            logger.info("spool drained guid=%s outcome=%s", receipt.guid, receipt.outcome.value)
        return counts
