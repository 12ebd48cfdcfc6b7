"""users.disabled and users.is_admin: users switched off, and users who may administer

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("users")}
    # batch mode: SQLite cannot add a NOT NULL column in place on every version.
    with op.batch_alter_table("users") as batch:
        if "disabled" not in present:
            batch.add_column(
                sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
            )
        if "is_admin" not in present:
            batch.add_column(
                sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
            )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_admin")
        batch.drop_column("disabled")
