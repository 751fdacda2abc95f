"""The mail outbox over SQLAlchemy Core; messages are stored sealed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import addresses
from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import OutboxItem, OutboxRepository
from identity.domain.mail import EmailMessage


class SqlOutboxRepository(OutboxRepository):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, tenant_id: UUID, message: EmailMessage, now: datetime) -> None:
        payload = json.dumps(
            {
                "to": message.to,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "sender": message.sender,
            }
        ).encode()
        await self._c.execute(
            insert(t.outbox).values(
                id=uuid4(),
                tenant_id=tenant_id,
                sealed_message=self._sealer.seal(payload),
                address_digest=addresses.address_digest(
                    self._sealer, tenant_id, message.to.casefold()
                ),
                state="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        return await addresses.delete_for_address(
            self._c, t.outbox, self._sealer, tenant_id, email_key
        )

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        c = t.outbox.c
        due = (
            select(c.id)
            .where(
                c.state == "pending",
                c.next_attempt_at <= now,
                or_(c.locked_until.is_(None), c.locked_until < now),
            )
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        if self._c.dialect.name == "postgresql":
            # Several server processes poll at once: each takes different rows.
            due = due.with_for_update(skip_locked=True)
        ids = [row.id for row in await self._c.execute(due)]
        if not ids:
            return []
        rows = await self._c.execute(
            update(t.outbox)
            .where(c.id.in_(ids))
            .values(locked_until=now + lease, attempts=c.attempts + 1)
            .returning(c.id, c.tenant_id, c.sealed_message, c.attempts)
        )
        items = []
        unreadable = []
        for row in rows:
            try:
                data = json.loads(self._sealer.unseal(row.sealed_message))
            except (UnsealError, ValueError, TypeError):
                # Sealed under another secret or damaged: give it up, keep the rest moving.
                unreadable.append(row.id)
                continue
            message = EmailMessage(
                to=data["to"],
                subject=data["subject"],
                text=data["text"],
                html=data["html"],
                sender=data["sender"],
            )
            items.append(
                OutboxItem(
                    id=row.id, tenant_id=row.tenant_id, message=message, attempts=row.attempts
                )
            )
        if unreadable:
            await self._c.execute(
                update(t.outbox)
                .where(t.outbox.c.id.in_(unreadable))
                .values(state="dead", sealed_message=None, last_error="unreadable sealed message")
            )
        return items

    async def mark_sent(self, item_id: UUID, now: datetime) -> None:
        await self._c.execute(
            update(t.outbox)
            .where(t.outbox.c.id == item_id)
            .values(state="sent", sent_at=now, sealed_message=None, locked_until=None)
        )

    async def mark_failed(
        self, item_id: UUID, error: str, next_attempt_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {"last_error": error, "locked_until": None}
        if next_attempt_at is None:
            values.update(state="dead", sealed_message=None)
        else:
            values["next_attempt_at"] = next_attempt_at
        await self._c.execute(update(t.outbox).where(t.outbox.c.id == item_id).values(**values))

    async def pending_count(self) -> int:
        query = select(func.count()).select_from(t.outbox).where(t.outbox.c.state == "pending")
        return int((await self._c.execute(query)).scalar_one())
