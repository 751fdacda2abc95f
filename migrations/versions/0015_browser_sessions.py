"""Browser sessions of the hosted pages, and the locale an account signed up in.

A browser session is a row of ``sessions`` (listed, ended and recorded as any
other) plus the keyed digest of its cookie here; deleting the session deletes
it. ``users.locale`` is the language the account's mails are written in.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "browser_sessions",
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_browser_sessions_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_browser_sessions_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_browser_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_digest", name="pk_browser_sessions"),
    )
    op.create_index(
        "ix_browser_sessions_tenant_id_user_id", "browser_sessions", ["tenant_id", "user_id"]
    )
    op.create_index("ix_browser_sessions_session_id", "browser_sessions", ["session_id"])
    op.add_column("users", sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locale")
    op.drop_index("ix_browser_sessions_session_id", table_name="browser_sessions")
    op.drop_index("ix_browser_sessions_tenant_id_user_id", table_name="browser_sessions")
    op.drop_table("browser_sessions")
