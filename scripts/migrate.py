"""Apply the Alembic migrations to ``DATABASE_URL``: ``python -m scripts.migrate`` (the
Procfile's ``release`` entry). The migrations themselves live in ``storage/``."""

from __future__ import annotations

import logging

import settings
from storage.migrate import upgrade


def main() -> None:
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL)
    upgrade(config.DATABASE_URL)


if __name__ == "__main__":
    main()
