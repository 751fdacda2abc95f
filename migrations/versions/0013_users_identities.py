"""The account's linked provider names, kept on the users row.

The hot read (every bearer request, ``/auth/me``) needs them; a correlated
aggregate over ``external_identities`` per read cost more than the rest of the
statement. Linking and unlinking (rare) keep the column current in their own
transaction.

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("identities", sa.Text(), nullable=True))
    aggregate = (
        "string_agg(provider, ',')"
        if op.get_bind().dialect.name == "postgresql"
        else "group_concat(provider, ',')"
    )
    op.execute(
        f"UPDATE users SET identities = (SELECT {aggregate} FROM external_identities"
        " WHERE external_identities.user_id = users.id)"
    )


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the table to drop a column.
    with op.batch_alter_table("users") as batch:
        batch.drop_column("identities")
