"""lookup_generation: a counter of changes to buckets and objects, for the exact read cache

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Every change to a row the GET/HEAD lookup reads bumps the counter, in the same
# transaction: a reader that sees the old count sees none of the change.
_WATCHED = ("buckets", "objects")
_EVENTS = ("INSERT", "UPDATE", "DELETE")


def _trigger(table: str, event: str) -> str:
    return f"lookup_generation_{table}_{event.lower()}"


def upgrade() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("lookup_generation"):  # else made by create_all
        op.create_table(
            "lookup_generation",
            sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("n", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if bind.execute(sa.text("SELECT count(*) FROM lookup_generation")).scalar() == 0:
        bind.execute(sa.text("INSERT INTO lookup_generation (id, n) VALUES (1, 0)"))
    if bind.dialect.name != "sqlite":
        return  # only SQLite's point reads cache; elsewhere the triggers would cost for nothing
    for table in _WATCHED:
        for event in _EVENTS:
            bind.execute(
                sa.text(
                    f"CREATE TRIGGER IF NOT EXISTS {_trigger(table, event)} "
                    f"AFTER {event} ON {table} FOR EACH ROW BEGIN "
                    "UPDATE lookup_generation SET n = n + 1 WHERE id = 1; END"
                )
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table in _WATCHED:
            for event in _EVENTS:
                bind.execute(sa.text(f"DROP TRIGGER IF EXISTS {_trigger(table, event)}"))
    op.drop_table("lookup_generation")
