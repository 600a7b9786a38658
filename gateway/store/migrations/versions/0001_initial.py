"""Resources, history, search indexes and search sets.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

T, ID, TS = 64, 64, 26


def _owner() -> list[sa.Column]:
    return [
        sa.Column("res_type", sa.String(T), nullable=False),
        sa.Column("res_id", sa.String(ID), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("res_type", sa.String(T), primary_key=True),
        sa.Column("res_id", sa.String(ID), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.String(TS), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index("ix_resources_type_updated", "resources", ["res_type", "last_updated"])
    op.create_table(
        "resource_history",
        sa.Column("res_type", sa.String(T), primary_key=True),
        sa.Column("res_id", sa.String(ID), primary_key=True),
        sa.Column("version_id", sa.Integer, primary_key=True),
        sa.Column("last_updated", sa.String(TS), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index("ix_history_type_updated", "resource_history", ["res_type", "last_updated"])
    op.create_index("ix_history_updated", "resource_history", ["last_updated"])

    op.create_table(
        "idx_token", *_owner(),
        sa.Column("system", sa.String(512), nullable=True),
        sa.Column("code", sa.String(512), nullable=False),
    )
    op.create_index("ix_token_lookup", "idx_token", ["res_type", "param", "code", "system"])
    op.create_table(
        "idx_string", *_owner(),
        sa.Column("value_norm", sa.String(512).with_variant(sa.String(512, collation="C"),
                                                            "postgresql"), nullable=False),
        sa.Column("value", sa.String(512), nullable=False),
    )
    op.create_index("ix_string_lookup", "idx_string", ["res_type", "param", "value_norm"])
    op.create_table(
        "idx_date", *_owner(),
        sa.Column("low", sa.String(TS), nullable=False),
        sa.Column("high", sa.String(TS), nullable=False),
    )
    op.create_index("ix_date_lookup", "idx_date", ["res_type", "param", "low", "high"])
    op.create_table(
        "idx_reference", *_owner(),
        sa.Column("target_type", sa.String(T), nullable=True),
        sa.Column("target_id", sa.String(ID), nullable=False),
    )
    op.create_index(
        "ix_reference_lookup", "idx_reference", ["res_type", "param", "target_id", "target_type"]
    )
    op.create_index("ix_reference_target", "idx_reference", ["target_type", "target_id"])
    op.create_table("idx_number", *_owner(), sa.Column("value", sa.Float, nullable=False))
    op.create_index("ix_number_lookup", "idx_number", ["res_type", "param", "value"])
    op.create_table("idx_uri", *_owner(), sa.Column("value", sa.String(1024), nullable=False))
    op.create_index("ix_uri_lookup", "idx_uri", ["res_type", "param", "value"])
    for kind in ("token", "string", "date", "reference", "number", "uri"):
        op.create_index(f"ix_{kind}_owner", f"idx_{kind}", ["res_type", "res_id"])

    op.create_table(
        "search_sets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("res_type", sa.String(T), nullable=False),
        sa.Column("created", sa.String(TS), nullable=False),
        sa.Column("expires", sa.String(TS), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("ids", sa.Text, nullable=False),
    )
    op.create_index("ix_search_sets_expires", "search_sets", ["expires"])


def downgrade() -> None:
    for name in ("search_sets", "idx_uri", "idx_number", "idx_reference", "idx_date",
                 "idx_string", "idx_token", "resource_history", "resources"):
        op.drop_table(name)
