"""users.secret_key holds the secret sealed: VARCHAR(512)

A user's secret key is stored sealed (store/user_secrets.py): a marker, the master key's id
and the base64 of nonce, ciphertext and tag, 115 characters for a 40-character secret, more
for a longer root secret from the settings. The column was 128 characters (PostgreSQL
enforces it; SQLite does not). The secrets themselves are sealed at the next start, which
has the master key (provision.open_user_secrets), not here.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column(
            "secret_key",
            existing_type=sa.String(128),
            type_=sa.String(512),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Sealed secrets do not fit back: a database going back to an earlier version needs them
    # in the clear, which only a server with the master key could write.
    with op.batch_alter_table("users") as batch:
        batch.alter_column(
            "secret_key",
            existing_type=sa.String(512),
            type_=sa.String(128),
            existing_nullable=False,
        )
