"""The queue of code requests over SQLAlchemy Core; requests are stored sealed."""

from __future__ import annotations

import json
from uuid import UUID

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import addresses
from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import CodeRequestQueue
from identity.domain.code_requests import CodeRequest, Registration
from identity.domain.emails import Email
from identity.domain.errors import InvalidEmailError
from identity.domain.otp import OtpPurpose


class SqlCodeRequestQueue(CodeRequestQueue):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, request: CodeRequest) -> None:
        registration = request.registration
        payload = {
            "email": request.email.value,
            "purpose": request.purpose.value,
            "registration": None
            if registration is None
            else {
                "password_hash": registration.password_hash,
                "full_name": registration.full_name,
                "client_ip": registration.client_ip,
                "user_agent": registration.user_agent,
                "locale": registration.locale,
            },
        }
        await self._c.execute(
            insert(t.code_requests).values(
                id=request.id,
                tenant_id=request.tenant_id,
                sealed_request=self._sealer.seal(json.dumps(payload).encode()),
                address_digest=addresses.address_digest(
                    self._sealer, request.tenant_id, request.email.key
                ),
                requested_at=request.requested_at,
            )
        )

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        return await addresses.delete_for_address(
            self._c, t.code_requests, self._sealer, tenant_id, email_key
        )

    async def take_next(self) -> CodeRequest | None:
        c = t.code_requests.c
        while True:
            oldest = select(c.id).order_by(c.requested_at).limit(1)
            if self._c.dialect.name == "postgresql":
                # Several server processes take requests at once: each its own.
                oldest = oldest.with_for_update(skip_locked=True)
            row = (
                await self._c.execute(
                    delete(t.code_requests)
                    .where(c.id == oldest.scalar_subquery())
                    .returning(c.id, c.tenant_id, c.sealed_request, c.requested_at)
                )
            ).first()
            if row is None:
                return None
            try:
                data = json.loads(self._sealer.unseal(row.sealed_request))
                registration = data["registration"]
                return CodeRequest(
                    id=row.id,
                    tenant_id=row.tenant_id,
                    email=Email(data["email"]),
                    purpose=OtpPurpose(data["purpose"]),
                    requested_at=row.requested_at,
                    registration=None
                    if registration is None
                    else Registration(
                        registration["password_hash"],
                        registration["full_name"],
                        registration.get("client_ip"),
                        registration.get("user_agent"),
                        registration.get("locale"),
                    ),
                )
            except (UnsealError, InvalidEmailError, ValueError, TypeError, KeyError):
                continue  # sealed under another secret or damaged: dropped, take the next
