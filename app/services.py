"""The per-process services a Flask app uses: engine, Redis, spool and the intake pipeline.

Created inside each process (gunicorn workers import the app after forking), never
inherited across a fork.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app

import settings as settings_module
from intake.pipeline import SubmissionPipeline
from intake.spool import Spool
from queueing import contract as queue
from storage.engine import create_engine, max_allowed_packet
from storage.outage import Outage

logger = logging.getLogger(__name__)

PACKET_HEADROOM = 64 * 1024
"""Room left in one database packet for the statement around the report itself."""

EXTENSION_KEY = "cpantesters"


@dataclass
class Services:
    settings: settings_module.Settings
    engine: sa.Engine
    redis: object
    spool: Spool
    intake: SubmissionPipeline
    max_submission_bytes: int

    @classmethod
    def init_app(cls, app: Flask, config: settings_module.Settings) -> Services:
        engine = create_engine(config.DATABASE_URL, connect_timeout=config.DB_CONNECT_TIMEOUT)
        redis_connection = queue.connect(config.REDIS_URL, timeout=config.REDIS_TIMEOUT)
        spool = Spool(config.SPOOL_DIR)
        intake = SubmissionPipeline(
            engine,
            redis_connection,
            spool,
            auth_enabled=config.auth_enabled,
            job_timeout=config.JOB_TIMEOUT,
            redis_outage=Outage("redis (enqueue)", logger, cap=config.OUTAGE_BACKOFF_MAX),
        )
        services = cls(config, engine, redis_connection, spool, intake, submission_limit(engine, config))
        app.extensions[EXTENSION_KEY] = services
        return services


def submission_limit(engine: sa.Engine, config: settings_module.Settings) -> int:
    """The body limit, lowered to what the database accepts in one packet."""
    limit = config.MAX_SUBMISSION_BYTES
    try:
        packet = max_allowed_packet(engine)
    except Exception as exc:  # the database may be down at start-up; the spool covers that
        logger.warning("could not read max_allowed_packet at start-up: %s", exc)
        return limit
    if packet is not None and limit > packet - PACKET_HEADROOM:
        logger.warning(
            "MAX_SUBMISSION_BYTES=%d is above max_allowed_packet=%d; using %d",
            limit,
            packet,
            packet - PACKET_HEADROOM,
        )
        limit = packet - PACKET_HEADROOM
    return limit


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions[EXTENSION_KEY]
