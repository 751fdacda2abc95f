"""Queued mail and code requests carry their address's keyed digest.

Both are sealed whole, so erasing an account could not find the mail and the
code requests still queued for its address. A keyed digest (HMAC of tenant and
address, key derived from the master secret) finds them without storing the
address in clear. Rows queued before this revision have none; they leave the
queue within seconds in normal operation.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("outbox", "code_requests")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("address_digest", sa.String(64), nullable=True))
        op.create_index(
            f"ix_{table}_tenant_id_address_digest", table, ["tenant_id", "address_digest"]
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_tenant_id_address_digest", table_name=table)
        # Batch mode: SQLite rebuilds the table to drop a column.
        with op.batch_alter_table(table) as batch:
            batch.drop_column("address_digest")
