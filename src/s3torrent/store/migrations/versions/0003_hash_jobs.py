"""hash_jobs: background hashing jobs claimed by one node at a time

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("hash_jobs"):
        return  # made by create_all before this revision existed
    op.create_table(
        "hash_jobs",
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("version_id"),
    )
    with op.batch_alter_table("hash_jobs") as batch_op:
        batch_op.create_index("ix_hash_jobs_claimed_until", ["claimed_until"], unique=False)


def downgrade() -> None:
    op.drop_table("hash_jobs")
