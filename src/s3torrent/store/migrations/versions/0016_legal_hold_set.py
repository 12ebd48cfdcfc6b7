"""object versions say whether a legal hold was ever set: legal_hold_set

S3 reports a version's legal hold as ON, OFF (it was set, then taken off or put OFF), or
not at all (it never had one: HeadObject and GetObject send no header, GetObjectLegalHold
answers NoSuchObjectLockConfiguration). legal_hold alone told two of the three states.

Rows stored before this revision cannot all be told apart: a hold that is ON was set; one
that is OFF is taken as never set, what most of them are.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_TABLES = ("objects", "object_versions")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for name in _TABLES:
        if "legal_hold_set" in {c["name"] for c in inspector.get_columns(name)}:
            continue  # made by create_all before this revision existed
        # ADD COLUMN with a constant default: no table copy on either engine (a copy of
        # `objects` on SQLite would also drop its lookup_generation triggers, revision 0012).
        op.add_column(
            name,
            sa.Column("legal_hold_set", sa.Boolean(), nullable=False, server_default=sa.false()),
        )
        table = sa.table(name, sa.column("legal_hold"), sa.column("legal_hold_set"))
        op.execute(table.update().where(table.c.legal_hold.is_(True)).values(legal_hold_set=True))


def downgrade() -> None:
    # DROP COLUMN in place (SQLite 3.35 and later, PostgreSQL): no table copy, as above.
    for name in _TABLES:
        op.drop_column(name, "legal_hold_set")
