"""Schema migrations (Alembic), run at start on SQLite and PostgreSQL alike.

`upgrade(engine)` brings any database to the newest revision. Nodes that start together on
one PostgreSQL database take an advisory lock, so exactly one of them migrates. A SQLite file
made before migrations existed (tables, no `alembic_version`) is stamped, not re-created.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
# Any constant works: it only has to be the same on every node.
_ADVISORY_LOCK_ID = 0x53335452  # "S3TR"
_FIRST_REVISION = "0001"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Migrate the database to the newest revision (idempotent; safe on several nodes)."""
    from s3torrent.store import metadata as md

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
