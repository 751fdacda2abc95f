"""API keys: minting, listing, revoking, and turning a presented key into a principal."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from uuid import UUID

import attrs

from identity.application.events import security_event
from identity.application.pagination import Page, page_of
from identity.application.ports import ApiKeyReader, Clock, Position, UnitOfWorkFactory
from identity.application.tokens import NO_CLIENT, ClientInfo
from identity.domain.api_keys import (
    KEY_PREFIX,
    ApiKey,
    ApiKeyNotFoundError,
    InsufficientScopeError,
    InvalidApiKeyError,
    Scope,
    check_grantable,
)
from identity.domain.events import EventType
from identity.domain.tenants import DEFAULT_TENANT_SLUG, Tenant

SECRET_BYTES = 32


class ApiKeyDigester:
    """HMAC-SHA256 of a key's secret, keyed by the master secret and bound to the key id.

    The secret is random (not a password), so a fast keyed hash is the right
    tool; a database leak alone gives nothing that authenticates.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"identity/api-key/v1", hashlib.sha256).digest()

    def digest(self, key_id: UUID, secret: str) -> str:
        return hmac.new(self._key, f"{key_id}|{secret}".encode(), hashlib.sha256).hexdigest()

    def matches(self, key: ApiKey, secret: str) -> bool:
        return hmac.compare_digest(self.digest(key.id, secret), key.secret_digest)


def parse_key(presented: str) -> tuple[UUID, str]:
    """``idk_<id>_<secret>`` -> (id, secret); ``InvalidApiKeyError`` for anything else."""
    prefix, _, rest = presented.partition("_")
    key_hex, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_hex) != 32 or not secret or len(secret) > 128:
        raise InvalidApiKeyError("malformed key")
    try:
        return UUID(hex=key_hex), secret
    except ValueError:
        raise InvalidApiKeyError("malformed key") from None


@attrs.frozen
class ServicePrincipal:
    """The caller behind a valid API key: a service of one tenant, with scopes."""

    key_id: UUID
    tenant_id: UUID
    scopes: frozenset[Scope]

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise InsufficientScopeError(scope.value)


@attrs.frozen
class CreateKey:
    tenant: Tenant
    name: str
    scopes: frozenset[Scope]
    # None: the operator at the command line, who may grant any scope.
    granted_by: ServicePrincipal | None = None
    client: ClientInfo = ClientInfo()


@attrs.frozen
class NewApiKey:
    key: ApiKey
    token: str  # shown once, never stored


class ApiKeys:
    """Create, list and revoke the keys of one tenant."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, digester: ApiKeyDigester) -> None:
        self._uow = uow
        self._clock = clock
        self._digester = digester

    async def create(self, command: CreateKey) -> NewApiKey:
        check_grantable(
            command.scopes,
            in_default_tenant=command.tenant.slug == DEFAULT_TENANT_SLUG,
            granter=command.granted_by.scopes if command.granted_by else None,
        )
        key_id = uuid.uuid4()
        secret = secrets.token_urlsafe(SECRET_BYTES)
        key = ApiKey(
            id=key_id,
            tenant_id=command.tenant.id,
            name=command.name,
            scopes=command.scopes,
            secret_digest=self._digester.digest(key_id, secret),
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.api_keys.add(key)
            await uow.events.add(
                security_event(
                    EventType.API_KEY_CREATED,
                    key.tenant_id,
                    key.created_at,
                    command.client,
                    key_id=str(key.id),
                    name=key.name,
                    scopes=sorted(key.scopes),
                    by_key_id=str(command.granted_by.key_id) if command.granted_by else None,
                )
            )
            await uow.commit()
        return NewApiKey(key, f"{KEY_PREFIX}_{key_id.hex}_{secret}")

    async def list(self, tenant_id: UUID) -> list[ApiKey]:
        async with self._uow() as uow:
            return await uow.api_keys.list_for_tenant(tenant_id)

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> Page[ApiKey]:
        """A keyset page of the tenant's keys, oldest first."""
        async with self._uow() as uow:
            rows = await uow.api_keys.list_page(tenant_id, after, limit + 1)
        return page_of(rows, limit, lambda key: (key.created_at, key.id))

    async def revoke(
        self,
        tenant_id: UUID,
        key_id: UUID,
        *,
        by: ServicePrincipal | None = None,
        client: ClientInfo = NO_CLIENT,
    ) -> ApiKey:
        """End a key at once; another tenant's key is ``ApiKeyNotFoundError``. Idempotent.

        ``by`` is the key that asked (None: the operator at the command line).
        """
        async with self._uow() as uow:
            key = await uow.api_keys.get(key_id)
            if key is None or key.tenant_id != tenant_id:
                raise ApiKeyNotFoundError(str(key_id))
            now = self._clock.now()
            if key.revoke(now):
                await uow.api_keys.update(key)
                await uow.events.add(
                    security_event(
                        EventType.API_KEY_REVOKED,
                        tenant_id,
                        now,
                        client,
                        key_id=str(key.id),
                        name=key.name,
                        by_key_id=str(by.key_id) if by else None,
                    )
                )
                await uow.commit()
        return key


class AuthenticateApiKey:
    """A presented key -> its principal, in one indexed read (no cache: revocation is immediate)."""

    def __init__(self, keys: ApiKeyReader, digester: ApiKeyDigester) -> None:
        self._keys = keys
        self._digester = digester

    async def __call__(self, presented: str) -> ServicePrincipal:
        key_id, secret = parse_key(presented)
        key = await self._keys.get(key_id)
        if key is None or not key.is_active or not self._digester.matches(key, secret):
            raise InvalidApiKeyError("unknown or revoked key")
        return ServicePrincipal(key.id, key.tenant_id, key.scopes)
