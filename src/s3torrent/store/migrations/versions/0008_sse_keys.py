"""sse_keys: key material of encrypted object versions and multipart uploads

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("sse_keys"):
        return  # made by create_all before this revision existed
    op.create_table(
        "sse_keys",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("salt", sa.LargeBinary(), nullable=True),
        sa.Column("key_hmac", sa.LargeBinary(), nullable=True),
        sa.Column("segments", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.create_index("ix_sse_keys_key_id", "sse_keys", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_sse_keys_key_id", table_name="sse_keys")
    op.drop_table("sse_keys")
