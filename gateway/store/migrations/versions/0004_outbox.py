"""Reliable delivery: the transactional outbox, per-destination circuit breakers, Subscriptions.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("ordering_key", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created", sa.String(26), nullable=False),
        sa.Column("next_attempt", sa.String(26), nullable=False),
        sa.Column("updated", sa.String(26), nullable=False),
        sa.Column("delivered", sa.String(26), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.String(26), nullable=True),
        sa.Column("lease_token", sa.Integer, nullable=False),
        sa.Column("agency", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_outbox_state_next", "outbox_messages", ["state", "next_attempt"])
    op.create_index("ix_outbox_key_seq", "outbox_messages", ["ordering_key", "seq"])
    op.create_index("ix_outbox_destination_state", "outbox_messages", ["destination", "state"])
    op.create_table(
        "outbox_breakers",
        sa.Column("destination", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("opened", sa.String(26), nullable=True),
        sa.Column("probe_at", sa.String(26), nullable=True),
        sa.Column("updated", sa.String(26), nullable=False),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("endpoint", sa.String(1024), nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("payload", sa.String(64), nullable=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
    )
    op.create_index("ix_subscriptions_type_status", "subscriptions", ["res_type", "status"])


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("outbox_breakers")
    op.drop_table("outbox_messages")
