"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 18:18:25.555571
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "buckets",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("acl", sa.Text(), nullable=True),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.Column("public_access_block", sa.Text(), nullable=True),
        sa.Column("settings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "objects",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
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
        sa.PrimaryKeyConstraint("bucket", "key"),
        sa.UniqueConstraint("version_id"),
    )
    op.create_table(
        "parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("last_modified", sa.Float(), nullable=False),
        sa.Column("checksum_value", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("upload_id", "part_number"),
    )
    op.create_table(
        "torrents",
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("piece_length", sa.Integer(), nullable=False),
        sa.Column("pieces_v1", sa.LargeBinary(), nullable=True),
        sa.Column("pieces_root", sa.LargeBinary(), nullable=True),
        sa.Column("piece_layer", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=True),
        sa.Column("swarm_v1", sa.LargeBinary(), nullable=True),
        sa.Column("swarm_v2", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("version_id"),
    )
    with op.batch_alter_table("torrents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_torrents_swarm_v1"), ["swarm_v1"], unique=False)
        batch_op.create_index(batch_op.f("ix_torrents_swarm_v2"), ["swarm_v2"], unique=False)

    op.create_table(
        "uploads",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("initiated", sa.Float(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("acl", sa.Text(), nullable=True),
        sa.Column("checksum_algorithm", sa.String(length=16), nullable=True),
        sa.Column("checksum_type", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index("ix_uploads_bucket_key", ["bucket", "key", "initiated"], unique=False)

    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("byte_hours", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "bucket", "operation"),
    )
    op.create_table(
        "usage_objects",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key", "operation"),
    )
    op.create_table(
        "usage_swarms",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("info_hash", sa.String(length=40), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.Column("uploaded", sa.BigInteger(), nullable=False),
        sa.Column("downloaded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "info_hash"),
    )
    with op.batch_alter_table("usage_swarms", schema=None) as batch_op:
        batch_op.create_index("ix_usage_swarms_object", ["bucket", "key"], unique=False)

    op.create_table(
        "users",
        sa.Column("canonical_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("access_key", sa.String(length=128), nullable=False),
        sa.Column("secret_key", sa.String(length=128), nullable=False),
        sa.Column("is_root", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("canonical_id"),
        sa.UniqueConstraint("access_key"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:

    op.drop_table("users")
    with op.batch_alter_table("usage_swarms", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_swarms_object")

    op.drop_table("usage_swarms")
    op.drop_table("usage_objects")
    op.drop_table("usage_hourly")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_uploads_bucket_key")

    op.drop_table("uploads")
    with op.batch_alter_table("torrents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_torrents_swarm_v2"))
        batch_op.drop_index(batch_op.f("ix_torrents_swarm_v1"))

    op.drop_table("torrents")
    op.drop_table("parts")
    op.drop_table("objects")
    op.drop_table("buckets")
