"""objects.inline_data: small objects' bytes kept in their metadata row

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Databases made by create_all before migrations existed may have the column already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("objects")}
    if "inline_data" not in columns:
        with op.batch_alter_table("objects") as batch_op:
            batch_op.add_column(sa.Column("inline_data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch_op:
        batch_op.drop_column("inline_data")
