"""upload_receipts.version_id: the version a completion made, so a retry answers it too

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One nullable column: a single ALTER TABLE on both engines (atomic; no table copy).
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("upload_receipts")}
    if "version_id" not in present:
        op.add_column("upload_receipts", sa.Column("version_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload_receipts") as batch:
        batch.drop_column("version_id")
