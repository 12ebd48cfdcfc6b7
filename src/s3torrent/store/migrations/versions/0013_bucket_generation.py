"""lookup_generation.buckets_n: a counter of changes to buckets alone

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Every write of an object moves `n` (revision 0012), which empties the exact cache of
# everything, bucket rows included. Bucket rows change rarely; their own counter lets a
# lookup of a bucket alone stay cached while objects are written (a stretch of PUTs).
_EVENTS = ("INSERT", "UPDATE", "DELETE")


def _trigger(event: str) -> str:
    return f"bucket_generation_{event.lower()}"


def upgrade() -> None:
    bind = op.get_bind()
    present = {c["name"] for c in sa.inspect(bind).get_columns("lookup_generation")}
    if "buckets_n" not in present:
        # NOT NULL with a default: one ALTER TABLE on both engines, no table copy.
        op.add_column(
            "lookup_generation",
            sa.Column("buckets_n", sa.BigInteger(), nullable=False, server_default="0"),
        )
    if bind.dialect.name != "sqlite":
        return  # only SQLite's point reads cache (see 0012)
    for event in _EVENTS:
        bind.execute(
            sa.text(
                f"CREATE TRIGGER IF NOT EXISTS {_trigger(event)} "
                f"AFTER {event} ON buckets FOR EACH ROW BEGIN "
                "UPDATE lookup_generation SET buckets_n = buckets_n + 1 WHERE id = 1; END"
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for event in _EVENTS:
            bind.execute(sa.text(f"DROP TRIGGER IF EXISTS {_trigger(event)}"))
    with op.batch_alter_table("lookup_generation") as batch:
        batch.drop_column("buckets_n")
