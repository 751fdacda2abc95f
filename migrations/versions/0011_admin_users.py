"""The admin API over users: last sign-in, and the index of the keyset list.

Revision ID: 0011
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_users_tenant_id_created_at_id", "users", ["tenant_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_users_tenant_id_created_at_id", table_name="users")
    # Batch mode: SQLite rebuilds the table to drop a column.
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_login_at")
