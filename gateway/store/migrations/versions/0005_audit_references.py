"""AuditEvents' reference index rows move to a table of their own (idx_audit_reference), and
AuditEvents (append-only) keep no history rows: their one version is their current row.

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

_COLUMNS = "res_type, res_id, param, target_type, target_id"


def upgrade() -> None:
    op.create_table(
        "idx_audit_reference",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=False),
    )
    op.execute(f"INSERT INTO idx_audit_reference ({_COLUMNS}) "
               f"SELECT {_COLUMNS} FROM idx_reference WHERE res_type = 'AuditEvent'")
    op.execute("DELETE FROM idx_reference WHERE res_type = 'AuditEvent'")
    op.create_index("ix_audit_reference_target", "idx_audit_reference",
                    ["target_id", "target_type", "param"])
    op.create_index("ix_audit_reference_owner", "idx_audit_reference", ["res_id"])
    op.execute("DELETE FROM resource_history WHERE res_type = 'AuditEvent'")


def downgrade() -> None:
    op.execute("INSERT INTO resource_history "
               "(res_type, res_id, version_id, last_updated, method, deleted, content) "
               "SELECT res_type, res_id, version_id, last_updated, 'POST', deleted, content "
               "FROM resources WHERE res_type = 'AuditEvent'")
    op.execute(f"INSERT INTO idx_reference ({_COLUMNS}) "
               f"SELECT {_COLUMNS} FROM idx_audit_reference")
    op.drop_table("idx_audit_reference")
