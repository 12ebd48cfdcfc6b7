"""usage rows say which bucket of their name they count: bucket_created

A deleted bucket's name may be taken again by another owner. Usage was stored by name only,
and a user's report showed the counts of the hours from the bucket's creation and the
per-object traffic of keys that exist now, so the new owner saw the earlier owner's traffic
of the hour the name was taken and of any key both used. Each row now holds the created_at
of the bucket it counts (part of the key of usage_hourly and usage_objects).

Rows stored before this revision cannot all be told apart. They are given to the bucket
that has the name now as the reports showed them to its owner (hours from the hour it was
created; objects if no hourly row of the name is older than that hour, that is, if the
name had no earlier bucket that was used), and 0 (no bucket: seen by root and admins
only) otherwise.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The tables whose key the column joins, with their new primary key.
_KEYED = {
    "usage_hourly": ("hour", "bucket", "bucket_created", "operation"),
    "usage_objects": ("bucket", "bucket_created", "key", "operation"),
}
_HOURLY = sa.table(
    "usage_hourly", sa.column("hour"), sa.column("bucket"), sa.column("bucket_created")
)
_SWARMS = sa.table(
    "usage_swarms", sa.column("hour"), sa.column("bucket"), sa.column("bucket_created")
)
_OBJECTS = sa.table("usage_objects", sa.column("bucket"), sa.column("bucket_created"))
_BUCKETS = sa.table("buckets", sa.column("name"), sa.column("created_at"))


def _column() -> sa.Column[float]:
    return sa.Column("bucket_created", sa.Float(), nullable=False, server_default="0")


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    added = False
    for table, key in _KEYED.items():
        if "bucket_created" in {c["name"] for c in inspector.get_columns(table)}:
            continue  # made by create_all before this revision existed
        _widen_key(table, inspector.get_pk_constraint(table).get("name"), key)
        added = True
    if "bucket_created" not in {c["name"] for c in inspector.get_columns("usage_swarms")}:
        op.add_column("usage_swarms", _column())
        added = True
    if added:
        _give_rows_to_current_buckets(bind)


def _widen_key(table: str, old_key: str | None, key: tuple[str, ...]) -> None:
    """Add bucket_created to the table and to its primary key. SQLite copies the table (its
    key cannot be altered; the copy's key is the new one, unnamed as before); PostgreSQL
    alters it in place, keeping the key's name."""
    with warnings.catch_warnings():
        # SQLite's copy: the reflected key's columns are replaced by the new key's, which
        # SQLAlchemy warns of (and does), as intended.
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_.*primary_key", sa.exc.SAWarning)
        with op.batch_alter_table(table) as batch:
            batch.add_column(_column())
            if old_key:
                batch.drop_constraint(old_key, type_="primary")
            batch.create_primary_key(old_key or f"{table}_pkey", list(key))


def _give_rows_to_current_buckets(bind: sa.Connection) -> None:
    """The counts stored before this revision, to the bucket that has the name now where
    its owner's report showed them (see the module's text)."""
    for name, created in bind.execute(sa.select(_BUCKETS.c.name, _BUCKETS.c.created_at)).all():
        first_hour = int(created) - int(created) % 3600
        for table in (_HOURLY, _SWARMS):
            bind.execute(
                table.update()
                .where(table.c.bucket == name, table.c.hour >= first_hour)
                .values(bucket_created=created)
            )
        earlier = bind.execute(
            sa.select(sa.literal(1))
            .select_from(_HOURLY)
            .where(_HOURLY.c.bucket == name, _HOURLY.c.hour < first_hour)
            .limit(1)
        ).first()
        if earlier is None:
            bind.execute(
                _OBJECTS.update().where(_OBJECTS.c.bucket == name).values(bucket_created=created)
            )


def downgrade() -> None:
    # The rows of one name's buckets come together again, their counts added up.
    bind = op.get_bind()
    for table, key in _KEYED.items():
        named = [c for c in key if c != "bucket_created"]
        counters = [c["name"] for c in sa.inspect(bind).get_columns(table) if c["name"] not in key]
        listed = ", ".join(named)
        sums = ", ".join(f"SUM({c}) AS {c}" for c in counters)
        bind.execute(
            sa.text(
                f"CREATE TABLE {table}_merged AS SELECT {listed}, {sums} FROM {table} "
                f"GROUP BY {listed}"
            )
        )
        bind.execute(sa.text(f"DELETE FROM {table}"))
        old_key = sa.inspect(bind).get_pk_constraint(table).get("name")
        with op.batch_alter_table(table) as batch:
            if old_key:
                batch.drop_constraint(old_key, type_="primary")
            batch.drop_column("bucket_created")
            batch.create_primary_key(old_key or f"{table}_pkey", named)
        every = ", ".join([*named, *counters])
        bind.execute(sa.text(f"INSERT INTO {table} ({every}) SELECT {every} FROM {table}_merged"))
        bind.execute(sa.text(f"DROP TABLE {table}_merged"))
    with op.batch_alter_table("usage_swarms") as batch:
        batch.drop_column("bucket_created")
