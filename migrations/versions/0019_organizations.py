"""Organizations, the tenant's roles, memberships, invitations, and the organization
each session acts in (section 19).

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0016"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        fk("organizations", "tenant_id", "tenants"),
        sa.UniqueConstraint("tenant_id", "slug", name="uq_organizations_tenant_id_slug"),
    )
    op.create_index(
        "ix_organizations_tenant_id_created_at_id",
        "organizations",
        ["tenant_id", "created_at", "id"],
    )
    op.create_table(
        "org_roles",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_org_roles"),
        fk("org_roles", "tenant_id", "tenants"),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        fk("memberships", "tenant_id", "tenants"),
        fk("memberships", "organization_id", "organizations"),
        fk("memberships", "user_id", "users"),
        sa.UniqueConstraint(
            "organization_id", "user_id", name="uq_memberships_organization_id_user_id"
        ),
    )
    op.create_index(
        "ix_memberships_organization_id_created_at_id",
        "memberships",
        ["organization_id", "created_at", "id"],
    )
    op.create_index("ix_memberships_tenant_id_user_id", "memberships", ["tenant_id", "user_id"])
    op.create_table(
        "membership_roles",
        sa.Column("membership_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(63), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("membership_id", "role", name="pk_membership_roles"),
        fk("membership_roles", "membership_id", "memberships"),
    )
    op.create_index(
        "ix_membership_roles_organization_id_role",
        "membership_roles",
        ["organization_id", "role"],
    )
    op.create_index("ix_membership_roles_tenant_id_role", "membership_roles", ["tenant_id", "role"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("roles", sa.String(1400), nullable=False),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("accepted_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invitations"),
        fk("invitations", "tenant_id", "tenants"),
        fk("invitations", "organization_id", "organizations"),
        sa.UniqueConstraint(
            "tenant_id", "code_digest", name="uq_invitations_tenant_id_code_digest"
        ),
    )
    op.create_index(
        "ix_invitations_organization_id_created_at",
        "invitations",
        ["organization_id", "created_at"],
    )
    op.create_index("ix_invitations_expires_at", "invitations", ["expires_at"])
    op.create_table(
        "session_organizations",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_session_organizations"),
        fk("session_organizations", "session_id", "sessions"),
        fk("session_organizations", "organization_id", "organizations"),
    )
    op.create_index(
        "ix_session_organizations_organization_id_user_id",
        "session_organizations",
        ["organization_id", "user_id"],
    )


def downgrade() -> None:
    for table in (
        "session_organizations",
        "invitations",
        "membership_roles",
        "memberships",
        "org_roles",
        "organizations",
    ):
        op.drop_table(table)
