"""torrent_marks: the keys of which a torrent was ever published

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("torrent_marks"):
        return  # made by create_all before this revision existed
    op.create_table(
        "torrent_marks",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key"),
    )


def downgrade() -> None:
    op.drop_table("torrent_marks")
