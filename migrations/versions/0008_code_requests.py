"""Pending code requests: register and request-otp answer at once, the worker issues codes.

Revision ID: 0008
Revises: 0012
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("sealed_request", sa.LargeBinary(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_code_requests"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_code_requests_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_code_requests_requested_at", "code_requests", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_code_requests_requested_at", table_name="code_requests")
    op.drop_table("code_requests")
