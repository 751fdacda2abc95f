"""Passkeys (WebAuthn): credentials, each account's user handle, pending ceremonies.

Revision ID: 0016
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0018"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE"
    )


def user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(1023), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.String(200), nullable=False),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        sa.Column("aaguid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_passkeys"),
        tenant_fk("passkeys"),
        user_fk("passkeys"),
        sa.UniqueConstraint(
            "tenant_id", "credential_id", name="uq_passkeys_tenant_id_credential_id"
        ),
    )
    op.create_index("ix_passkeys_user_id_created_at", "passkeys", ["user_id", "created_at"])
    op.create_table(
        "webauthn_user_handles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("handle", sa.LargeBinary(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_webauthn_user_handles"),
        tenant_fk("webauthn_user_handles"),
        user_fk("webauthn_user_handles"),
        sa.UniqueConstraint(
            "tenant_id", "handle", name="uq_webauthn_user_handles_tenant_id_handle"
        ),
    )
    op.create_table(
        "webauthn_flows",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("ceremony", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("email_bound", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webauthn_flows"),
        tenant_fk("webauthn_flows"),
        user_fk("webauthn_flows"),
    )
    op.create_index("ix_webauthn_flows_expires_at", "webauthn_flows", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_webauthn_flows_expires_at", table_name="webauthn_flows")
    op.drop_table("webauthn_flows")
    op.drop_table("webauthn_user_handles")
    op.drop_index("ix_passkeys_user_id_created_at", table_name="passkeys")
    op.drop_table("passkeys")
