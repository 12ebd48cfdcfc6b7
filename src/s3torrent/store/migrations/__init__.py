"""Schema migrations (Alembic), run at start on SQLite and PostgreSQL alike.

`upgrade(engine)` brings any database to the newest revision. Nodes that start together on
one PostgreSQL database take an advisory lock, so exactly one of them migrates. A SQLite file
made before migrations existed (tables, no `alembic_version`) is stamped, not re-created.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).parent
# The newest revision (tests/unit/test_migrations.py checks it against versions/). A database
# already there is not touched and Alembic is not even imported: ~10 MiB and ~0.3 s saved on
# every start and CLI call.
HEAD = "0017"
# Any constant works: it only has to be the same on every node.
_ADVISORY_LOCK_ID = 0x53335452  # "S3TR"
_FIRST_REVISION = "0001"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Migrate the database to the newest revision (idempotent; safe on several nodes)."""
    if _at_head(engine):
        return
    from alembic import command

    from s3torrent.store import schema as md

    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # Transaction-scoped: released at commit, also if this process dies.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_ID)))
        cfg = alembic_config(conn)
        inspector = sa.inspect(conn)
        if current_revision(conn) is None and inspector.has_table("objects"):
            # Created by create_all before migrations existed: it has (at least) the first
            # revision's schema; later revisions check what is already there.
            md.meta.create_all(conn)
            command.stamp(cfg, _FIRST_REVISION)
        command.upgrade(cfg, "head")
        # Tables added to metadata.py without a revision yet still get created; columns
        # need a revision (tests/unit/test_migrations.py fails until one exists).
        md.meta.create_all(conn, checkfirst=True)


def _at_head(engine: sa.Engine) -> bool:
    version = sa.table("alembic_version", sa.column("version_num", sa.String))
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.select(version.c.version_num)).scalar() == HEAD)
    except sa.exc.DBAPIError:
        return False  # no alembic_version table yet
