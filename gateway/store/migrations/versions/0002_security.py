"""Client registry, used client assertions and the gateway's signing keys.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("jwks", sa.Text, nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("created", sa.String(26), nullable=False),
        sa.Column("revoked", sa.String(26), nullable=True),
    )
    op.create_table(
        "used_assertions",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires", sa.String(26), nullable=False),
    )
    op.create_index("ix_used_assertions_expires", "used_assertions", ["expires"])
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("created", sa.String(26), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("retired", sa.String(26), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_index("ix_used_assertions_expires", "used_assertions")
    op.drop_table("used_assertions")
    op.drop_table("clients")
