"""Identity: links from source Patients to golden Patients, blocking keys, decisions, review, history.

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
    op.create_table(
        "identity_links",
        sa.Column("source_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("decider", sa.String(160), nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("updated", sa.String(26), nullable=False),
    )
    op.create_index("ix_identity_links_golden", "identity_links", ["golden_id"])
    op.create_table(
        "identity_blocks",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("source_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_identity_blocks_source", "identity_blocks", ["source_id"])
    op.create_table(
        "identity_decisions",
        sa.Column("left_id", sa.String(64), primary_key=True),
        sa.Column("right_id", sa.String(64), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decider", sa.String(160), nullable=False),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column("decided", sa.String(26), nullable=False),
    )
    op.create_index("ix_identity_decisions_right", "identity_decisions", ["right_id"])
    op.create_table(
        "identity_reviews",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("candidate_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("levels", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.String(26), nullable=False),
        sa.Column("decided", sa.String(26), nullable=True),
        sa.Column("decider", sa.String(160), nullable=True),
        sa.Column("reason", sa.String(512), nullable=True),
    )
    op.create_index("ix_identity_reviews_status", "identity_reviews", ["status", "created"])
    op.create_index("ix_identity_reviews_pair", "identity_reviews", ["source_id", "candidate_id"])
    op.create_table(
        "identity_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", sa.String(26), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=True),
        sa.Column("golden_id", sa.String(64), nullable=True),
        sa.Column("previous_golden", sa.String(64), nullable=True),
        sa.Column("grade", sa.String(16), nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("decider", sa.String(160), nullable=False),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_identity_history_source", "identity_history", ["source_id", "at"])
    op.create_index("ix_identity_history_golden", "identity_history", ["golden_id", "at"])
    op.create_index("ix_identity_history_previous", "identity_history",
                    ["previous_golden", "at"])


def downgrade() -> None:
    op.drop_index("ix_identity_history_previous", "identity_history")
    op.drop_index("ix_identity_history_golden", "identity_history")
    op.drop_index("ix_identity_history_source", "identity_history")
    op.drop_table("identity_history")
    op.drop_index("ix_identity_reviews_pair", "identity_reviews")
    op.drop_index("ix_identity_reviews_status", "identity_reviews")
    op.drop_table("identity_reviews")
    op.drop_index("ix_identity_decisions_right", "identity_decisions")
    op.drop_table("identity_decisions")
    op.drop_index("ix_identity_blocks_source", "identity_blocks")
    op.drop_table("identity_blocks")
    op.drop_index("ix_identity_links_golden", "identity_links")
    op.drop_table("identity_links")
