"""Alembic environment: runs on the connection s3torrent passes in (no alembic.ini needed)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from s3torrent.store import schema as md

config = context.config
target_metadata = md.meta


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # `alembic -x url=... revision --autogenerate` from a shell, for new revisions.
        url = context.get_x_argument(as_dictionary=True)["url"]
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode re-creates tables for it.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
