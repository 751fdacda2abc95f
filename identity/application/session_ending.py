"""The one rule for ending sessions: end them and record it, one event per ended session.

Every use case that ends sessions calls :func:`end_sessions` (all the active
sessions of an account, but ``keep``) or :func:`end_session` (one session) inside
its unit of work. Each ended session gets its own ``session.revoked`` event: its
``session_id`` is the session that ended, ``data.reason`` says why and
``data.by_session_id`` names the session whose request caused it, when there
is one (section 10 of the API contract).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from identity.application.events import security_event
from identity.application.ports import UnitOfWork
from identity.application.tokens import ClientInfo
from identity.domain.events import EventType

# The contract's reasons (``data.reason`` of ``session.revoked``).
EndReason = Literal[
    "logout",
    "logout_all",
    "admin",
    "password_changed",
    "password_reset",
    "refresh_token_reused",
    "revoked_by_user",
    "account_disabled",
    "mfa_disabled",
    "account_deleted",
    # The OpenID Provider's (section 17): a replayed code, a client deleted, a client's
    # own revocation.
    "code_reused",
    "client_deleted",
    "revoked_by_client",
]


async def end_sessions(
    uow: UnitOfWork,
    tenant_id: UUID,
    account_id: UUID,
    now: datetime,
    client: ClientInfo,
    reason: EndReason,
    *,
    by_session_id: UUID | None = None,
    keep: UUID | None = None,
) -> list[UUID]:
    """End every active session of the account but ``keep``; returns the ids ended."""
    ended = await uow.sessions.revoke_all_for_account(tenant_id, account_id, now, reason, keep=keep)
    for session_id in ended:
        await _record(uow, tenant_id, account_id, session_id, now, client, reason, by_session_id)
    return ended


async def end_session(
    uow: UnitOfWork,
    tenant_id: UUID,
    account_id: UUID,
    session_id: UUID,
    now: datetime,
    client: ClientInfo,
    reason: EndReason,
    *,
    by_session_id: UUID | None = None,
    client_id: str | None = None,
) -> bool:
    """End one session; False (and nothing recorded) when it was not active.

    ``client_id``: the OAuth client the session was issued to, recorded with it.
    """
    if not await uow.sessions.revoke(tenant_id, session_id, now, reason):
        return False
    await _record(
        uow, tenant_id, account_id, session_id, now, client, reason, by_session_id, client_id
    )
    return True


async def _record(
    uow: UnitOfWork,
    tenant_id: UUID,
    account_id: UUID,
    session_id: UUID,
    now: datetime,
    client: ClientInfo,
    reason: EndReason,
    by_session_id: UUID | None,
    client_id: str | None = None,
) -> None:
    cause = {} if by_session_id is None else {"by_session_id": str(by_session_id)}
    if client_id is not None:
        cause["client_id"] = client_id
    await uow.events.add(
        security_event(
            EventType.SESSION_REVOKED,
            tenant_id,
            now,
            client,
            user_id=account_id,
            session_id=session_id,
            reason=reason,
            **cause,
        )
    )
