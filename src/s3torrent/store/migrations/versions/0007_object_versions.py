"""object_versions: versioning and object lock

Existing rows stay in `objects` as their key's current version and become its "null"
version (versioned = false): S3 reports "null" for objects written before versioning was
enabled. Every other version (noncurrent ones, delete markers) goes to `object_versions`.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _added_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("versioned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("lock_mode", sa.String(length=16), nullable=True),
        sa.Column("lock_until", sa.Float(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("objects")}
    # ADD COLUMN with a constant default: no table rewrite on either engine, and every
    # existing row reads as the null version, unlocked.
    for column in _added_columns():
        if column.name not in present:
            op.add_column("objects", column)
    if inspector.has_table("object_versions"):
        return  # made by create_all before this revision existed
    op.create_table(
        "object_versions",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("delete_marker", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("last_modified", sa.Float(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("acl", sa.Text(), nullable=True),
        sa.Column("checksum_algorithm", sa.String(length=16), nullable=True),
        sa.Column("checksum_value", sa.String(length=128), nullable=True),
        sa.Column("checksum_type", sa.String(length=16), nullable=True),
        sa.Column("parts", sa.Text(), nullable=True),
        sa.Column("inline_data", sa.LargeBinary(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        *_added_columns(),
        sa.PrimaryKeyConstraint("bucket", "key", "seq"),
        sa.UniqueConstraint("version_id"),
    )


def downgrade() -> None:
    op.drop_table("object_versions")
    with op.batch_alter_table("objects") as batch_op:
        for column in _added_columns():
            batch_op.drop_column(column.name)
