"""Apply the Alembic migrations to a database URL (``scripts.migrate`` is the command)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from storage.engine import create_engine

ROOT = Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "storage" / "migrations"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision``."""
    engine = create_engine(database_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()
