"""tags: object tags (objects and uploads in progress)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in ("objects", "uploads"):
        if "tags" not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("uploads", "tags")
    op.drop_column("objects", "tags")
