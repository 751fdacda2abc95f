"""Token introspection (RFC 7662): is this access token good right now?"""

from __future__ import annotations

import attrs

from identity.application.ports import UnitOfWorkFactory
from identity.application.sessions import Authenticate
from identity.domain.errors import InvalidTokenError
from identity.domain.tenants import Tenant
from identity.domain.tokens import AccessClaims


@attrs.frozen
class IntrospectToken:
    """A token presented by a service of ``tenant`` (the tenant of its API key)."""

    tenant: Tenant
    token: str = attrs.field(repr=False)


@attrs.frozen
class TokenIntrospection:
    """``claims`` of an active token; ``None`` for anything else."""

    claims: AccessClaims | None

    @property
    def active(self) -> bool:
        return self.claims is not None


class Introspect:
    """Whether a token is an active access token of the caller's tenant.

    Active means: an access token that verifies (signature, ``iss``, ``aud``,
    ``exp``, type), of ``tenant``, whose session is live and whose account is
    active: the checks ``/auth/me`` makes. Anything else (a refresh token,
    another tenant's token, an ended session, a disabled or deleted account,
    junk) is inactive, and which of these it is stays unsaid. Never raises for
    a bad token; raises ``StorageUnavailableError`` when the database is away.
    """

    def __init__(self, authenticate: Authenticate, uow: UnitOfWorkFactory | None = None) -> None:
        self._authenticate = authenticate
        self._uow = uow

    async def __call__(self, command: IntrospectToken) -> TokenIntrospection:
        try:
            principal = await self._authenticate(command.tenant, command.token)
        except InvalidTokenError:
            return TokenIntrospection(None)
        claims = principal.claims
        if claims.org is not None and self._uow is not None:
            # The truth now, not the token's: a removed member has no organization
            # claims, a changed role its new permissions.
            async with self._uow() as uow:
                current = await uow.session_organizations.member_claims(
                    claims.tenant_id, claims.org.org_id, claims.subject
                )
            claims = attrs.evolve(claims, org=current)
        return TokenIntrospection(claims)
