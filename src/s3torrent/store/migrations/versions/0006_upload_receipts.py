"""upload_receipts: what a completed multipart upload answered, for idempotent retries

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("upload_receipts"):
        return  # made by create_all before this revision existed
    op.create_table(
        "upload_receipts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("parts_digest", sa.String(length=64), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    op.create_index("ix_upload_receipts_completed_at", "upload_receipts", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_upload_receipts_completed_at", table_name="upload_receipts")
    op.drop_table("upload_receipts")
