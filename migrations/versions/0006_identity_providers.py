"""Named identity providers: the provider of each pending sign-in, link flows, and
one linked identity per provider and account.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Pending sign-ins live ten minutes and did not record their provider: a
    # browser in the middle of one at the upgrade starts again.
    op.execute(sa.text("DELETE FROM oauth_states"))
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("provider", sa.String(32), nullable=False))
        batch.add_column(sa.Column("link_user_id", sa.Uuid(), nullable=True))
    # Before the constraint: keep the oldest link when an account has several at
    # one provider (possible before, when two subjects shared a verified email).
    op.execute(
        sa.text(
            "DELETE FROM external_identities WHERE EXISTS ("
            " SELECT 1 FROM external_identities AS older"
            " WHERE older.tenant_id = external_identities.tenant_id"
            " AND older.user_id = external_identities.user_id"
            " AND older.provider = external_identities.provider"
            " AND (older.created_at < external_identities.created_at"
            "  OR (older.created_at = external_identities.created_at"
            "      AND older.id < external_identities.id)))"
        )
    )
    with op.batch_alter_table("external_identities") as batch:
        batch.create_unique_constraint(
            "uq_external_identities_tenant_id_user_id_provider",
            ["tenant_id", "user_id", "provider"],
        )


def downgrade() -> None:
    with op.batch_alter_table("external_identities") as batch:
        batch.drop_constraint(
            "uq_external_identities_tenant_id_user_id_provider", type_="unique"
        )
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("link_user_id")
        batch.drop_column("provider")
