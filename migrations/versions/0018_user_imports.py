"""Importing users: foreign password hashes, opaque metadata and the progress of runs.

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table to widen a column.
    with op.batch_alter_table("users") as batch:
        batch.alter_column(
            "password_hash", existing_type=sa.String(200), type_=sa.String(1024)
        )
        batch.add_column(sa.Column("app_metadata", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("user_metadata", sa.JSON(), nullable=True))
    op.create_table(
        "user_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("imported", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_user_imports_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_user_imports"),
    )


def downgrade() -> None:
    op.drop_table("user_imports")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("user_metadata")
        batch.drop_column("app_metadata")
        batch.alter_column(
            "password_hash", existing_type=sa.String(1024), type_=sa.String(200)
        )
