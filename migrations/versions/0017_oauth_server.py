"""The authorization server: registered clients, codes, client sessions, consents.

Revision ID: 0017
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0019"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE"
    )


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def _client_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["client_id"],
        ["oauth_clients.client_id"],
        name=f"fk_{table}_client_id_oauth_clients",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_oauth_clients"),
        _tenant_fk("oauth_clients"),
    )
    op.create_index(
        "ix_oauth_clients_tenant_id_created_at_client_id",
        "oauth_clients",
        ["tenant_id", "created_at", "client_id"],
    )
    op.create_table(
        "oauth_codes",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("binding", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("consumed_at", TZ, nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_oauth_codes"),
        _tenant_fk("oauth_codes"),
        _client_fk("oauth_codes"),
        _user_fk("oauth_codes"),
    )
    op.create_index("ix_oauth_codes_expires_at", "oauth_codes", ["expires_at"])
    op.create_table(
        "oauth_client_sessions",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("scopes", sa.String(2000), nullable=False),
        sa.Column("audience", sa.String(2048), nullable=False),
        sa.Column("auth_time", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("browser_session_id", sa.Uuid(), nullable=True),
        sa.Column("logout_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("logout_next_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("session_id", name="pk_oauth_client_sessions"),
        _tenant_fk("oauth_client_sessions"),
        _client_fk("oauth_client_sessions"),
    )
    op.create_index(
        "ix_oauth_client_sessions_tenant_id_user_id",
        "oauth_client_sessions",
        ["tenant_id", "user_id"],
    )
    op.create_index(
        "ix_oauth_client_sessions_browser_session_id",
        "oauth_client_sessions",
        ["browser_session_id"],
    )
    op.create_table(
        "oauth_consents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(2000), nullable=False),
        sa.Column("granted_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "client_id", name="pk_oauth_consents"),
        _tenant_fk("oauth_consents"),
        _client_fk("oauth_consents"),
        _user_fk("oauth_consents"),
    )


def downgrade() -> None:
    op.drop_table("oauth_consents")
    op.drop_index("ix_oauth_client_sessions_browser_session_id", "oauth_client_sessions")
    op.drop_index("ix_oauth_client_sessions_tenant_id_user_id", "oauth_client_sessions")
    op.drop_table("oauth_client_sessions")
    op.drop_index("ix_oauth_codes_expires_at", "oauth_codes")
    op.drop_table("oauth_codes")
    op.drop_index("ix_oauth_clients_tenant_id_created_at_client_id", "oauth_clients")
    op.drop_table("oauth_clients")
