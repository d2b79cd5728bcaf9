"""Alembic environment: migrations run on the connection the caller passes
(``storage.migrate.upgrade``, run by ``python -m scripts.migrate``), or on the URL given to
the alembic command line with ``-x url=...``; storage never reads the environment itself."""

from alembic import context

from storage.engine import create_engine
from storage.tables import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("run the migrations with `python -m scripts.migrate`, or alembic -x url=<database URL>")
    engine = create_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
