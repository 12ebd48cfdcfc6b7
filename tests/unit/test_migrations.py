"""The Alembic revisions build exactly the schema metadata.py declares."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from s3torrent.store import metadata as md
from s3torrent.store import migrations


def test_migrations_match_the_declared_schema(tmp_path: Path) -> None:
    engine = md.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    # Revisions only, without the create_all safety net upgrade() adds afterwards.
    with engine.begin() as conn:
        from alembic import command

        command.upgrade(migrations.alembic_config(conn), "head")
        diff = compare_metadata(MigrationContext.configure(conn), md.meta)
    engine.dispose()
    assert diff == [], f"metadata.py changed without a migration revision: {diff}"


def test_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    engine = md.create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    md.meta.create_all(engine)  # what s3torrent did before migrations
    migrations.upgrade(engine)
    migrations.upgrade(engine)  # idempotent
    with engine.connect() as conn:
        assert migrations.current_revision(conn) == migrations.head_revision()
        assert sa.inspect(conn).has_table("objects")
    engine.dispose()


def test_head_constant_names_the_newest_revision() -> None:
    assert migrations.head_revision() == migrations.HEAD
