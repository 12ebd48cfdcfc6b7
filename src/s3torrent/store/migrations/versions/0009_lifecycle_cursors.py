"""lifecycle_cursors: where each bucket's lifecycle pass got to

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("lifecycle_cursors"):
        return  # made by create_all before this revision existed
    op.create_table(
        "lifecycle_cursors",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("after_key", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket"),
    )


def downgrade() -> None:
    op.drop_table("lifecycle_cursors")
