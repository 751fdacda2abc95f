"""Where a finished first factor becomes a session, or the ``mfa_required`` answer.

Password login, code login and every provider sign-in end here, inside their
own transaction, so the second-factor rule cannot be forgotten by one of them.
"""

from __future__ import annotations

import hashlib
import secrets

import attrs

from identity.application.events import security_event
from identity.application.policy import Policy
from identity.application.ports import UnitOfWork
from identity.application.tokens import ClientInfo, SessionTokens, TokenPair
from identity.domain.accounts import Account
from identity.domain.events import EventType
from identity.domain.mfa import MFA_TOKEN_TTL, Amr, MfaChallenge, SecondFactor
from identity.domain.tenants import Tenant


@attrs.frozen
class MfaRequired:
    """The first factor passed; the client must bring a second one to ``/auth/mfa/verify``."""

    mfa_token: str = attrs.field(repr=False)
    methods: tuple[str, ...]
    expires_in: int


SignInResult = TokenPair | MfaRequired


def login_method(first_factor: Amr, provider: str | None = None) -> str:
    """The ``data.method`` of ``login.succeeded``: password, otp, or the provider's name."""
    if first_factor is Amr.PASSWORD:
        return "password"
    if first_factor is Amr.EMAILED_CODE:
        return "otp"
    return provider or first_factor.value


def mfa_token_key(token: str) -> str:
    """What is stored for an ``mfa_token``: its SHA-256 (it is random, so no key is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def complete_sign_in(
    uow: UnitOfWork,
    tokens: SessionTokens,
    account: Account,
    tenant: Tenant,
    policy: Policy,
    client: ClientInfo,
    method: Amr,
    *,
    provider: str | None = None,
) -> SignInResult:
    """Start an aal1 session (recording ``login.succeeded``), or, with MFA on, a pending
    second step; the caller commits. ``provider`` names a federated sign-in's provider.

    ``account`` must be read in ``uow``'s transaction, so ``mfa_enabled`` is current.
    """
    if not account.mfa_enabled:
        pair = await tokens.start(uow, account, tenant, policy, client, amr=(method.value,))
        await uow.events.add(
            security_event(
                EventType.LOGIN_SUCCEEDED,
                tenant.id,
                tokens.now(),
                client,
                user_id=account.id,
                session_id=pair.session_id,
                method=login_method(method, provider),
                aal="aal1",
            )
        )
        return pair
    token = secrets.token_urlsafe(32)
    now = tokens.now()
    await uow.mfa_challenges.add(
        MfaChallenge(
            key=mfa_token_key(token),
            tenant_id=tenant.id,
            user_id=account.id,
            first_factor=method,
            user_agent=client.user_agent,
            ip=client.ip,
            created_at=now,
            expires_at=now + MFA_TOKEN_TTL,
        )
    )
    return MfaRequired(
        mfa_token=token,
        methods=(SecondFactor.TOTP.value, SecondFactor.RECOVERY_CODE.value),
        expires_in=int(MFA_TOKEN_TTL.total_seconds()),
    )
