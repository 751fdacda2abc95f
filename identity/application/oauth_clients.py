"""Registered clients of the authorization server: create, list, change, delete, rotate."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any
from uuid import UUID

import attrs

from identity.application.events import security_event
from identity.application.pagination import Page, page_of
from identity.application.ports import Clock, Position, UnitOfWork, UnitOfWorkFactory
from identity.application.session_ending import end_session
from identity.application.tokens import NO_CLIENT, ClientInfo
from identity.domain.events import EventType
from identity.domain.oauth import (
    OPENID_SCOPES,
    AuthMethod,
    Client,
    ClientNotFoundError,
    ClientType,
    GrantType,
    InvalidClientMetadataError,
)
from identity.domain.tenants import Tenant

SECRET_BYTES = 32


class ClientSecretDigester:
    """HMAC-SHA256 of a client secret, keyed by the master secret and bound to the client.

    A client secret is random (256 bits), not a password: a fast keyed hash
    keeps the token endpoint fast and a database leak alone authenticates nothing.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(
            secret_key.encode(), b"identity/oauth-client-secret/v1", hashlib.sha256
        ).digest()

    def digest(self, client_id: str, secret: str) -> str:
        return hmac.new(self._key, f"{client_id}|{secret}".encode(), hashlib.sha256).hexdigest()

    def matches(self, client: Client, secret: str) -> bool:
        if client.secret_digest is None:
            return False
        return hmac.compare_digest(self.digest(client.client_id, secret), client.secret_digest)


def tenant_scopes(tenant: Tenant) -> tuple[str, ...]:
    """Every scope a client of ``tenant`` may be allowed: OpenID's and the tenant's API scopes."""
    return (*OPENID_SCOPES, *split_setting(tenant.settings.get("oauth_scopes")))


def split_setting(value: object) -> tuple[str, ...]:
    """A comma (or space) separated tenant setting as a tuple, in order, without repeats."""
    if isinstance(value, list | tuple):
        items = [str(item) for item in value]
    elif isinstance(value, str):
        items = value.replace(",", " ").split()
    else:
        return ()
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


@attrs.frozen
class ClientSpec:
    """What a registration says; absent values take the defaults of the client's type."""

    name: str
    redirect_uris: tuple[str, ...] = ()
    type: ClientType = ClientType.CONFIDENTIAL
    first_party: bool = False
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[GrantType, ...] | None = None
    allowed_scopes: tuple[str, ...] | None = None
    token_endpoint_auth_method: AuthMethod | None = None
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    backchannel_logout_uri: str | None = None
    id_token_signed_response_alg: str = "RS256"
    logo_url: str | None = None
    dynamically_registered: bool = False


@attrs.frozen
class NewClient:
    client: Client
    secret: str | None = attrs.field(repr=False)  # shown once, never stored


def _default_grants(spec: ClientSpec) -> tuple[GrantType, ...]:
    if spec.type is ClientType.PUBLIC:
        return (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN)
    if not spec.redirect_uris:
        return (GrantType.CLIENT_CREDENTIALS,)
    return (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN, GrantType.CLIENT_CREDENTIALS)


def build_client(tenant: Tenant, spec: ClientSpec, client_id: str, now: Any) -> Client:
    known = tenant_scopes(tenant)
    scopes = spec.allowed_scopes if spec.allowed_scopes is not None else known
    unknown = [scope for scope in scopes if scope not in known]
    if unknown:
        raise InvalidClientMetadataError(
            "allowed_scopes", f"not a scope of this tenant: {', '.join(unknown)}"
        )
    method = spec.token_endpoint_auth_method or (
        AuthMethod.NONE if spec.type is ClientType.PUBLIC else AuthMethod.CLIENT_SECRET_BASIC
    )
    client = Client(
        client_id=client_id,
        tenant_id=tenant.id,
        name=spec.name.strip(),
        type=spec.type,
        redirect_uris=tuple(dict.fromkeys(spec.redirect_uris)),
        grant_types=spec.grant_types or _default_grants(spec),
        allowed_scopes=tuple(dict.fromkeys(scopes)),
        token_endpoint_auth_method=method,
        created_at=now,
        first_party=spec.first_party,
        post_logout_redirect_uris=tuple(dict.fromkeys(spec.post_logout_redirect_uris)),
        jwks_uri=spec.jwks_uri,
        jwks=spec.jwks,
        backchannel_logout_uri=spec.backchannel_logout_uri,
        id_token_signed_response_alg=spec.id_token_signed_response_alg,
        logo_url=spec.logo_url,
        dynamically_registered=spec.dynamically_registered,
    )
    client.validate()
    return client


@attrs.frozen
class ClientChanges:
    """A PATCH: None leaves a value as it is."""

    name: str | None = None
    redirect_uris: tuple[str, ...] | None = None
    post_logout_redirect_uris: tuple[str, ...] | None = None
    allowed_scopes: tuple[str, ...] | None = None
    first_party: bool | None = None
    backchannel_logout_uri: str | None = None
    id_token_signed_response_alg: str | None = None
    logo_url: str | None = None
    jwks_uri: str | None = None


class ClientAdmin:
    """The clients of one tenant, for the admin API and the command line."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, digester: ClientSecretDigester):
        self._uow = uow
        self._clock = clock
        self._digester = digester

    def _secret_for(self, client: Client) -> str | None:
        if not client.uses_secret():
            client.secret_digest = None
            return None
        secret = secrets.token_urlsafe(SECRET_BYTES)
        client.secret_digest = self._digester.digest(client.client_id, secret)
        return secret

    async def create(
        self, tenant: Tenant, spec: ClientSpec, client: ClientInfo = NO_CLIENT
    ) -> NewClient:
        """Register a client; ``InvalidClientMetadataError`` names the rule it breaks."""
        now = self._clock.now()
        registered = build_client(tenant, spec, str(uuid.uuid4()), now)
        secret = self._secret_for(registered)
        async with self._uow() as uow:
            await uow.oauth_clients.add(registered)
            await uow.events.add(
                security_event(
                    EventType.CLIENT_CREATED,
                    tenant.id,
                    now,
                    client,
                    client_id=registered.client_id,
                    name=registered.name,
                    client_type=registered.type.value,
                    first_party=registered.first_party,
                    dynamically_registered=registered.dynamically_registered,
                )
            )
            await uow.commit()
        return NewClient(registered, secret)

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> Page[Client]:
        async with self._uow() as uow:
            rows = await uow.oauth_clients.list_page(tenant_id, after, limit + 1)
        return page_of(rows, limit, lambda c: (c.created_at, UUID(c.client_id)))

    async def get(self, tenant_id: UUID, client_id: str) -> Client:
        async with self._uow() as uow:
            return await _client_of(uow, tenant_id, client_id)

    async def update(self, tenant: Tenant, client_id: str, changes: ClientChanges) -> Client:
        async with self._uow() as uow:
            current = await _client_of(uow, tenant.id, client_id)
            spec = ClientSpec(
                name=changes.name if changes.name is not None else current.name,
                redirect_uris=_or(changes.redirect_uris, current.redirect_uris),
                type=current.type,
                first_party=_or(changes.first_party, current.first_party),
                post_logout_redirect_uris=_or(
                    changes.post_logout_redirect_uris, current.post_logout_redirect_uris
                ),
                grant_types=current.grant_types,
                allowed_scopes=_or(changes.allowed_scopes, current.allowed_scopes),
                token_endpoint_auth_method=current.token_endpoint_auth_method,
                jwks_uri=_or(changes.jwks_uri, current.jwks_uri),
                jwks=current.jwks,
                backchannel_logout_uri=_or(
                    changes.backchannel_logout_uri, current.backchannel_logout_uri
                ),
                id_token_signed_response_alg=_or(
                    changes.id_token_signed_response_alg, current.id_token_signed_response_alg
                ),
                logo_url=_or(changes.logo_url, current.logo_url),
                dynamically_registered=current.dynamically_registered,
            )
            changed = build_client(tenant, spec, current.client_id, current.created_at)
            changed.secret_digest = current.secret_digest
            await uow.oauth_clients.update(changed)
            await uow.commit()
        return changed

    async def rotate_secret(self, tenant_id: UUID, client_id: str) -> tuple[Client, str]:
        """A new secret; the old one stops working at once. Only for secret-using clients."""
        async with self._uow() as uow:
            current = await _client_of(uow, tenant_id, client_id)
            secret = self._secret_for(current)
            if secret is None:
                raise InvalidClientMetadataError(
                    "token_endpoint_auth_method", "this client authenticates without a secret"
                )
            await uow.oauth_clients.update(current)
            await uow.commit()
        return current, secret

    async def delete(self, tenant_id: UUID, client_id: str, client: ClientInfo = NO_CLIENT) -> None:
        """Delete the client; every session it holds ends first (``client_deleted``)."""
        async with self._uow() as uow:
            current = await _client_of(uow, tenant_id, client_id)
            now = self._clock.now()
            for link in await uow.client_sessions.list_for_client(tenant_id, client_id):
                await end_session(
                    uow,
                    tenant_id,
                    link.user_id,
                    link.session_id,
                    now,
                    client,
                    "client_deleted",
                    client_id=client_id,
                )
            await uow.oauth_clients.delete(tenant_id, client_id)
            await uow.events.add(
                security_event(
                    EventType.CLIENT_DELETED,
                    tenant_id,
                    now,
                    client,
                    client_id=client_id,
                    name=current.name,
                )
            )
            await uow.commit()


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


async def _client_of(uow: UnitOfWork, tenant_id: UUID, client_id: str) -> Client:
    client = await uow.oauth_clients.get(client_id)
    if client is None or client.tenant_id != tenant_id:
        raise ClientNotFoundError(client_id)
    return client
