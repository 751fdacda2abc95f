"""The authorization server: authorize, token, userinfo, revoke, introspect (section 17).

The protocol keeps only its own state (clients, codes, consents, client
sessions); who is signed in comes from ``BrowserSessions``, and the tokens a
client receives belong to an ordinary ``Session``, so logout-all, password
reset, disable and delete end them like every other.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import attrs

from identity.application.events import security_event
from identity.application.oauth_clients import ClientSecretDigester, split_setting, tenant_scopes
from identity.application.policy import Policy, policy_for
from identity.application.ports import (
    ActiveSessionReader,
    BrowserSessions,
    BrowserSignIn,
    Clock,
    OAuthClientReader,
    OAuthTokenCodec,
    UnitOfWork,
    UnitOfWorkFactory,
    WebhookDeliveryError,
    WebhookSender,
)
from identity.application.session_ending import end_session
from identity.application.tenancy import ResolveTenant
from identity.application.tokens import NO_CLIENT, ClientInfo, new_jti
from identity.domain.accounts import Account
from identity.domain.errors import InvalidTokenError, TenantNotFoundError
from identity.domain.events import EventType
from identity.domain.oauth import (
    CODE_TTL,
    AuthMethod,
    AuthorizationCode,
    Client,
    ClientNotFoundError,
    ClientSession,
    Consent,
    EndedClientSession,
    GrantType,
    OAuthProtocolError,
    invalid_client,
    invalid_grant,
    invalid_request,
)
from identity.domain.sessions import Presented, Session
from identity.domain.tenants import Tenant
from identity.domain.webhooks import RETRY_SCHEDULE, next_attempt_after

MAX_PARAM_LENGTH = 2048
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# An internal parameter of the return trip through the sign-in page: the sign-in
# must be newer than this (unix milliseconds), so prompt=login and max_age end.
AUTH_AFTER = "auth_after"


class CodeDigester:
    """HMAC-SHA256 of an authorization code under the master secret: codes are never
    stored in clear, and a database leak alone redeems nothing."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(
            secret_key.encode(), b"identity/oauth-code/v1", hashlib.sha256
        ).digest()

    def digest(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()


class CachedClients(OAuthClientReader):
    """Clients read at most once per ``seconds`` per process: client authentication is
    on every token request, and the token endpoint's throughput is a target. A rotated
    secret or a deleted client is seen by every process within ``seconds``; a deleted
    client's sessions end at once all the same (``ClientAdmin.delete``)."""

    MAX_ENTRIES = 10_000

    def __init__(self, reader: OAuthClientReader, seconds: float = 2.0) -> None:
        self._reader = reader
        self._seconds = seconds
        self._cache: dict[str, tuple[float, Client | None]] = {}

    async def get(self, client_id: str) -> Client | None:
        now = time.monotonic()
        cached = self._cache.get(client_id)
        if cached is not None and now - cached[0] < self._seconds:
            return cached[1]
        client = await self._reader.get(client_id)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        self._cache[client_id] = (now, client)
        return client


@attrs.frozen
class ServerSettings:
    issuer: str
    audience: str
    id_token_ttl: timedelta = timedelta(minutes=15)


@attrs.frozen
class OAuthServices:
    uow: UnitOfWorkFactory
    clock: Clock
    tokens: OAuthTokenCodec
    secrets: ClientSecretDigester
    codes: CodeDigester
    policy: Policy
    settings: ServerSettings
    clients: OAuthClientReader
    tenants: ResolveTenant

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)

    @property
    def token_endpoint(self) -> str:
        return f"{self.settings.issuer.rstrip('/')}/oauth2/token"


def audience_for(settings: ServerSettings, tenant: Tenant, resource: str | None) -> str:
    """RFC 8707: the access token's ``aud``, one of the tenant's resources (default
    ``IDENTITY_AUDIENCE``); anything else is ``invalid_target``."""
    if resource is None or resource == settings.audience:
        return settings.audience
    if resource in split_setting(tenant.settings.get("oauth_resources")):
        return resource
    raise OAuthProtocolError("invalid_target", "resource is not one of this tenant's")


# --- client authentication ----------------------------------------------------------


@attrs.frozen
class ClientCredentials:
    """What the request presented; the edge parses it (Basic header, form, assertion)."""

    client_id: str | None
    method: AuthMethod
    secret: str | None = attrs.field(default=None, repr=False)
    assertion: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class AuthenticatedClient:
    client: Client
    tenant: Tenant


class AuthenticateClient:
    """The client behind the credentials, authenticated as it registered. Any failure is
    ``invalid_client`` (401): unknown client, other method, wrong secret, bad assertion."""

    def __init__(self, services: OAuthServices) -> None:
        self._s = services

    async def __call__(self, credentials: ClientCredentials) -> AuthenticatedClient:
        if not credentials.client_id or len(credentials.client_id) > 64:
            raise invalid_client("no client authentication")
        client = await self._s.clients.get(credentials.client_id)
        if client is None:
            raise invalid_client()
        try:
            tenant = await self._s.tenants.by_id(client.tenant_id)
        except TenantNotFoundError:
            raise invalid_client() from None
        if credentials.method is not client.token_endpoint_auth_method:
            raise invalid_client("not the client's registered authentication method")
        if client.uses_secret():
            if not credentials.secret or not self._s.secrets.matches(client, credentials.secret):
                raise invalid_client()
        elif client.token_endpoint_auth_method is AuthMethod.PRIVATE_KEY_JWT:
            if not credentials.assertion:
                raise invalid_client()
            await self._s.tokens.verify_client_assertion(
                credentials.assertion, client, self._s.token_endpoint
            )
        return AuthenticatedClient(client, tenant)


# --- authorization endpoint ---------------------------------------------------------


class Step(Enum):
    SIGN_IN = "/ui/sign-in"
    MFA = "/ui/mfa"
    CONSENT = "/ui/consent"


@attrs.frozen
class ErrorPage:
    """Never a redirect: the client or the redirect URI cannot be trusted."""

    message: str


@attrs.frozen
class RedirectToClient:
    redirect_uri: str
    params: dict[str, str]


@attrs.frozen
class Interact:
    """The browser goes to a page and comes back to authorize with ``params``."""

    step: Step
    params: dict[str, str]
    tenant: Tenant
    client: Client
    scopes: tuple[str, ...] = ()


AuthorizeResult = ErrorPage | RedirectToClient | Interact


@attrs.frozen
class AuthorizeRequest:
    params: Mapping[str, str]
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    client: ClientInfo = NO_CLIENT


@attrs.frozen
class ValidRequest:
    client: Client
    tenant: Tenant
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    challenge: str
    audience: str
    prompts: frozenset[str]
    max_age: int | None


class AuthorizeFlow:
    """``/oauth2/authorize``: code + PKCE S256 only, exact redirect URIs (RFC 8252 loopback
    ports for public clients), ``state`` and ``iss`` (RFC 9207) on every redirect."""

    def __init__(self, services: OAuthServices, browsers: BrowserSessions) -> None:
        self._s = services
        self._browsers = browsers

    @property
    def issuer(self) -> str:
        return self._s.settings.issuer

    async def client_and_redirect(
        self, params: Mapping[str, str]
    ) -> tuple[Client, Tenant, str] | ErrorPage:
        client_id = params.get("client_id")
        if not client_id or len(client_id) > 64:
            return ErrorPage("The request names no known application.")
        client = await self._s.clients.get(client_id)
        if client is None:
            return ErrorPage("The request names no known application.")
        try:
            tenant = await self._s.tenants.by_id(client.tenant_id)
        except TenantNotFoundError:
            return ErrorPage("The request names no known application.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None:
            if len(client.redirect_uris) != 1:
                return ErrorPage("The request names no redirect URI of this application.")
            redirect_uri = client.redirect_uris[0]
        if "#" in redirect_uri or not client.redirect_uri_matches(redirect_uri):
            return ErrorPage("The redirect URI is not one registered for this application.")
        return client, tenant, redirect_uri

    def _error(
        self, redirect_uri: str, state: str | None, error: str, description: str
    ) -> RedirectToClient:
        params = {"error": error, "error_description": description, "iss": self._s.settings.issuer}
        if state is not None:
            params["state"] = state
        return RedirectToClient(redirect_uri, params)

    def _validate(
        self, params: Mapping[str, str], client: Client, tenant: Tenant, redirect_uri: str
    ) -> ValidRequest:
        if any(len(value) > MAX_PARAM_LENGTH for value in params.values()):
            raise invalid_request("a parameter is too long")
        if params.get("response_type") != "code":
            raise OAuthProtocolError(
                "unsupported_response_type", "only response_type=code is supported"
            )
        if GrantType.AUTHORIZATION_CODE not in client.grant_types:
            raise OAuthProtocolError(
                "unauthorized_client", "this client may not use the authorization code grant"
            )
        challenge = params.get("code_challenge")
        if not challenge:
            raise invalid_request("code_challenge (PKCE S256) is required")
        if params.get("code_challenge_method") != "S256":
            raise invalid_request("code_challenge_method must be S256")
        if not _CHALLENGE.match(challenge):
            raise invalid_request("code_challenge is malformed")
        scopes = tuple(dict.fromkeys((params.get("scope") or "").split()))
        if not scopes:
            raise OAuthProtocolError("invalid_scope", "scope is required")
        if not client.allows_scopes(scopes) or not set(scopes) <= set(tenant_scopes(tenant)):
            raise OAuthProtocolError("invalid_scope", "a scope is not allowed for this client")
        nonce = params.get("nonce")
        if "openid" in scopes and client.is_public and not nonce:
            raise invalid_request("nonce is required")
        prompts = frozenset((params.get("prompt") or "").split())
        if not prompts <= _PROMPTS:
            raise invalid_request("unknown prompt value")
        if "none" in prompts and len(prompts) > 1:
            raise invalid_request("prompt=none cannot be combined")
        max_age: int | None = None
        if params.get("max_age") is not None:
            raw = params["max_age"]
            if not raw.isdigit() or len(raw) > 10:
                raise invalid_request("max_age is a number of seconds")
            max_age = int(raw)
        return ValidRequest(
            client=client,
            tenant=tenant,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=params.get("state"),
            nonce=nonce,
            challenge=challenge,
            audience=audience_for(self._s.settings, tenant, params.get("resource")),
            prompts=prompts,
            max_age=max_age,
        )

    async def __call__(self, request: AuthorizeRequest) -> AuthorizeResult:
        found = await self.client_and_redirect(request.params)
        if isinstance(found, ErrorPage):
            return found
        client, tenant, redirect_uri = found
        state = request.params.get("state")
        try:
            valid = self._validate(request.params, client, tenant, redirect_uri)
        except OAuthProtocolError as error:
            return self._error(redirect_uri, state, error.error, error.description)
        browser = await self._browsers.signed_in(tenant.id, request.cookies)
        now = self._s.clock.now()
        back = {k: v for k, v in request.params.items() if k != AUTH_AFTER}
        if not self._fresh_enough(browser, valid, request.params, now):
            if "none" in valid.prompts:
                return self._error(redirect_uri, state, "login_required", "sign-in required")
            if "login" in valid.prompts:
                back["prompt"] = " ".join(sorted(valid.prompts - {"login"}))
                if not back["prompt"]:
                    del back["prompt"]
            back[AUTH_AFTER] = str(int(now.timestamp() * 1000))
            return Interact(Step.SIGN_IN, back, tenant, client)
        assert browser is not None
        account, consent = browser.account, None
        if account is None or not client.first_party:
            async with self._s.uow() as uow:
                if account is None:
                    account = await uow.accounts.get(tenant.id, browser.user_id)
                if not client.first_party:
                    consent = await uow.consents.get(tenant.id, browser.user_id, client.client_id)
        if account is None or not account.is_active:
            if "none" in valid.prompts:
                return self._error(redirect_uri, state, "login_required", "sign-in required")
            return Interact(Step.SIGN_IN, back, tenant, client)
        if account.mfa_enabled and browser.aal != "aal2":
            if "none" in valid.prompts:
                return self._error(
                    redirect_uri, state, "interaction_required", "a second factor is required"
                )
            return Interact(Step.MFA, back, tenant, client)
        if not client.first_party and (
            consent is None or not consent.covers(valid.scopes) or "consent" in valid.prompts
        ):
            if "none" in valid.prompts:
                return self._error(redirect_uri, state, "consent_required", "consent required")
            return Interact(Step.CONSENT, back, tenant, client, valid.scopes)
        return await self._issue(valid, browser, account, now, request.client)

    @staticmethod
    def _fresh_enough(
        browser: BrowserSignIn | None,
        valid: ValidRequest,
        params: Mapping[str, str],
        now: datetime,
    ) -> bool:
        if browser is None:
            return False
        auth_after = params.get(AUTH_AFTER)
        if auth_after is not None and auth_after.isdigit() and len(auth_after) <= 15:
            return browser.auth_time.timestamp() * 1000 > int(auth_after)
        if "login" in valid.prompts:
            return False
        if valid.max_age is not None:
            return (now - browser.auth_time).total_seconds() <= valid.max_age
        return True

    async def _issue(
        self,
        valid: ValidRequest,
        browser: BrowserSignIn,
        account: Account,
        now: datetime,
        info: ClientInfo,
    ) -> RedirectToClient:
        code = secrets.token_urlsafe(32)
        stored = AuthorizationCode(
            digest=self._s.codes.digest(code),
            tenant_id=valid.tenant.id,
            client_id=valid.client.client_id,
            user_id=account.id,
            redirect_uri=valid.redirect_uri,
            code_challenge=valid.challenge,
            scopes=valid.scopes,
            audience=valid.audience,
            auth_time=browser.auth_time,
            aal=browser.aal,
            amr=browser.amr,
            created_at=now,
            expires_at=now + CODE_TTL,
            nonce=valid.nonce,
            browser_session_id=browser.session_id,
        )
        async with self._s.uow() as uow:
            await uow.authorization_codes.add(stored)
            await uow.events.add(
                security_event(
                    EventType.LOGIN_SUCCEEDED,
                    valid.tenant.id,
                    now,
                    info,
                    user_id=account.id,
                    session_id=browser.session_id,
                    method="oauth",
                    aal=browser.aal,
                    client_id=valid.client.client_id,
                )
            )
            await uow.commit()
        params = {"code": code, "iss": self._s.settings.issuer}
        if valid.state is not None:
            params["state"] = valid.state
        return RedirectToClient(valid.redirect_uri, params)


class GrantConsent:
    """The consent page's Allow: remember the scopes for (user, client)."""

    def __init__(self, services: OAuthServices) -> None:
        self._s = services

    async def __call__(
        self,
        tenant: Tenant,
        browser: BrowserSignIn,
        client: Client,
        scopes: tuple[str, ...],
        info: ClientInfo = NO_CLIENT,
    ) -> None:
        now = self._s.clock.now()
        async with self._s.uow() as uow:
            current = await uow.consents.get(tenant.id, browser.user_id, client.client_id)
            granted = tuple(dict.fromkeys((*(current.scopes if current else ()), *scopes)))
            await uow.consents.put(
                Consent(tenant.id, browser.user_id, client.client_id, granted, now)
            )
            await uow.events.add(
                security_event(
                    EventType.OAUTH_CONSENT_GRANTED,
                    tenant.id,
                    now,
                    info,
                    user_id=browser.user_id,
                    session_id=browser.session_id,
                    client_id=client.client_id,
                    scopes=list(scopes),
                )
            )
            await uow.commit()


# --- token endpoint -----------------------------------------------------------------


@attrs.frozen
class TokenAnswer:
    access_token: str = attrs.field(repr=False)
    expires_in: int
    scope: str
    refresh_token: str | None = attrs.field(default=None, repr=False)
    id_token: str | None = attrs.field(default=None, repr=False)


def _scope_subset(asked: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if asked is None:
        return allowed
    scopes = tuple(dict.fromkeys(asked.split()))
    if not set(scopes) <= set(allowed):
        raise OAuthProtocolError("invalid_scope", "a scope is not allowed")
    return scopes


class TokenGrants:
    """The grants of ``/oauth2/token`` for an authenticated client.

    ``sessions``: the refresh grant's common case as ``/auth/refresh-token``'s, one read
    and one conditional write outside any transaction; without it every refresh is a
    transaction."""

    def __init__(
        self, services: OAuthServices, sessions: ActiveSessionReader | None = None
    ) -> None:
        self._s = services
        self._sessions = sessions

    # client_credentials ---------------------------------------------------------

    def client_credentials(
        self, who: AuthenticatedClient, scope: str | None, resource: str | None
    ) -> TokenAnswer:
        client, tenant = who.client, who.tenant
        if client.is_public or GrantType.CLIENT_CREDENTIALS not in client.grant_types:
            raise OAuthProtocolError(
                "unauthorized_client", "this client may not use client_credentials"
            )
        api_scopes = split_setting(tenant.settings.get("oauth_scopes"))
        allowed = tuple(s for s in client.allowed_scopes if s in api_scopes)
        scopes = _scope_subset(scope, allowed)
        audience = audience_for(self._s.settings, tenant, resource)
        now = self._s.clock.now()
        ttl = self._s.policy_for(tenant).access_token_ttl
        access = self._s.tokens.encode_access_token(
            {
                "sub": client.client_id,
                "aud": audience,
                "exp": int((now + ttl).timestamp()),
                "iat": int(now.timestamp()),
                "jti": new_jti(),
                "client_id": client.client_id,
                "scope": " ".join(scopes),
                "tid": str(tenant.id),
            }
        )
        return TokenAnswer(access, int(ttl.total_seconds()), " ".join(scopes))

    # authorization_code ---------------------------------------------------------

    async def authorization_code(
        self,
        who: AuthenticatedClient,
        code: str | None,
        redirect_uri: str | None,
        verifier: str | None,
        info: ClientInfo = NO_CLIENT,
    ) -> TokenAnswer:
        client, tenant = who.client, who.tenant
        if GrantType.AUTHORIZATION_CODE not in client.grant_types:
            raise OAuthProtocolError("unauthorized_client", "grant not allowed for this client")
        if not code or len(code) > 256:
            raise invalid_request("code is required")
        if not verifier:
            raise invalid_request("code_verifier is required")
        if not redirect_uri:
            raise invalid_request("redirect_uri is required")
        s = self._s
        policy = s.policy_for(tenant)
        session_id = uuid.uuid4()
        async with s.uow() as uow:
            now = s.clock.now()
            stored, first = await uow.authorization_codes.consume(
                s.codes.digest(code), now, session_id
            )
            if stored is None or stored.tenant_id != tenant.id:
                raise invalid_grant("unknown code")
            if not first:
                # A replay: whatever the code was redeemed for ends now (RFC 6749 §4.1.2).
                # (A code spent by a refused exchange names a session never created.)
                if stored.session_id is not None:
                    await end_session(
                        uow,
                        tenant.id,
                        stored.user_id,
                        stored.session_id,
                        now,
                        info,
                        "code_reused",
                        client_id=client.client_id,
                    )
                await uow.commit()
                raise invalid_grant("code already used")
            # The code is spent whatever follows: a refusal commits that before it is raised.
            try:
                account = await self._redeemer(
                    uow, tenant, stored, client, redirect_uri, verifier, now
                )
            except OAuthProtocolError:
                await uow.commit()
                raise
            session = Session(
                id=session_id,
                tenant_id=tenant.id,
                user_id=account.id,
                created_at=now,
                last_used_at=now,
                refresh_jti=new_jti(),
                refresh_issued_at=now,
                expires_at=now + policy.refresh_token_ttl,
                user_agent=(info.user_agent or None) and info.user_agent[:512],
                ip=info.ip,
                aal=stored.aal,
                amr=stored.amr,
            )
            if not await uow.sessions.add(session):
                await uow.commit()
                raise invalid_grant("the account is gone or disabled")
            link = ClientSession(
                session_id=session.id,
                tenant_id=tenant.id,
                client_id=client.client_id,
                user_id=account.id,
                scopes=stored.scopes,
                audience=stored.audience,
                auth_time=stored.auth_time,
                created_at=now,
                browser_session_id=stored.browser_session_id,
            )
            await uow.client_sessions.add(link)
            await uow.commit()
        offline = "offline_access" in stored.scopes or client.first_party
        return self._answer(
            client, tenant, account, session, link, stored.scopes, now, stored.nonce, offline
        )

    async def _redeemer(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        stored: AuthorizationCode,
        client: Client,
        redirect_uri: str,
        verifier: str,
        now: datetime,
    ) -> Account:
        """The active account a just-spent code is redeemed for; ``invalid_grant`` when
        the code or the sign-in behind it may not be redeemed."""
        if stored.is_expired(now):
            raise invalid_grant("code expired")
        if stored.client_id != client.client_id:
            raise invalid_grant("code of another client")
        if stored.redirect_uri != redirect_uri:
            raise invalid_grant("redirect_uri differs from the authorization request")
        if not self._s.tokens.pkce_s256_matches(verifier, stored.code_challenge):
            raise invalid_grant("code_verifier does not match")
        if stored.browser_session_id is not None and self._sessions is not None:
            # The account and its sign-in in one read (outside the transaction).
            found = await self._sessions.account_for_session(
                tenant.id, stored.browser_session_id, stored.user_id, now
            )
            if found is None:
                raise invalid_grant("the sign-in has ended, or the account is disabled")
            return found
        account = await uow.accounts.get(tenant.id, stored.user_id)
        if account is None or not account.is_active:
            raise invalid_grant("the account is gone or disabled")
        if stored.browser_session_id is not None:
            browser = await uow.sessions.get(tenant.id, stored.browser_session_id)
            if browser is None or not browser.is_active(now):
                raise invalid_grant("the sign-in has ended")
        return account

    def _answer(
        self,
        client: Client,
        tenant: Tenant,
        account: Account,
        session: Session,
        link: ClientSession,
        scopes: tuple[str, ...],
        now: datetime,
        nonce: str | None,
        with_refresh: bool,
        with_id_token: bool = True,
    ) -> TokenAnswer:
        s = self._s
        policy = s.policy_for(tenant)
        ttl = policy.access_token_ttl
        scope = " ".join(scopes)
        access = s.tokens.encode_access_token(
            {
                "sub": str(account.id),
                "aud": link.audience,
                "exp": int((now + ttl).timestamp()),
                "iat": int(now.timestamp()),
                "jti": new_jti(),
                "client_id": client.client_id,
                "scope": scope,
                "tid": str(tenant.id),
                "sid": str(session.id),
                "auth_time": int(link.auth_time.timestamp()),
                "acr": session.aal,
                "amr": list(session.amr),
            }
        )
        refresh = None
        if with_refresh:
            refresh = s.tokens.encode_refresh_token(
                {
                    "sub": str(account.id),
                    "sid": str(session.id),
                    "jti": session.refresh_jti,
                    "iat": int(session.refresh_issued_at.timestamp()),
                    "exp": int(session.expires_at.timestamp()),
                    "client_id": client.client_id,
                    "tid": str(tenant.id),
                    # What the session was granted, signed: a refresh needs no other read.
                    "scope": " ".join(link.scopes),
                    "resource": link.audience,
                    "auth_time": int(link.auth_time.timestamp()),
                }
            )
        id_token = None
        if with_id_token and "openid" in scopes:
            algorithm = client.id_token_signed_response_alg
            claims: dict[str, Any] = {
                "sub": str(account.id),
                "aud": client.client_id,
                "exp": int((now + s.settings.id_token_ttl).timestamp()),
                "iat": int(now.timestamp()),
                "auth_time": int(link.auth_time.timestamp()),
                "acr": session.aal,
                "amr": list(session.amr),
                "azp": client.client_id,
                "sid": str(session.id),
                "at_hash": s.tokens.at_hash(access, algorithm),
                "jti": new_jti(),
            }
            if nonce is not None:
                claims["nonce"] = nonce
            claims.update(user_claims(account, scopes))
            id_token = s.tokens.encode_id_token(claims, algorithm)
        return TokenAnswer(access, int(ttl.total_seconds()), scope, refresh, id_token)

    # refresh_token --------------------------------------------------------------

    async def refresh_token(
        self,
        who: AuthenticatedClient,
        token: str | None,
        scope: str | None,
        info: ClientInfo = NO_CLIENT,
    ) -> TokenAnswer:
        client, tenant = who.client, who.tenant
        if GrantType.REFRESH_TOKEN not in client.grant_types:
            raise OAuthProtocolError("unauthorized_client", "grant not allowed for this client")
        if not token:
            raise invalid_request("refresh_token is required")
        s = self._s
        try:
            claims = s.tokens.decode_refresh_token(token)
            session_id = UUID(str(claims["sid"]))
            user_id = UUID(str(claims["sub"]))
        except (InvalidTokenError, ValueError, KeyError):
            raise invalid_grant("refresh token invalid") from None
        if claims.get("client_id") != client.client_id or claims.get("tid") != str(tenant.id):
            raise invalid_grant("refresh token of another client")
        jti = str(claims.get("jti"))
        try:
            granted = tuple(str(claims["scope"]).split())
            link = ClientSession(
                session_id=session_id,
                tenant_id=tenant.id,
                client_id=client.client_id,
                user_id=user_id,
                scopes=granted,
                audience=str(claims["resource"]),
                auth_time=datetime.fromtimestamp(int(str(claims["auth_time"])), tz=UTC),
                created_at=self._s.clock.now(),
            )
        except (KeyError, TypeError, ValueError):
            raise invalid_grant("refresh token invalid") from None
        scopes = _scope_subset(scope, granted)
        policy = s.policy_for(tenant)
        if self._sessions is not None:
            found = await self._sessions.session_with_account(tenant.id, session_id, user_id)
            if found is not None and found[1].is_active:
                live, owner, _ = found
                now = s.clock.now()
                presented = live.classify(jti, now, policy.refresh_reuse_grace)
                if presented is Presented.IN_GRACE:
                    return self._answer(
                        client, tenant, owner, live, link, scopes, now, None, True, False
                    )
                if presented is Presented.CURRENT:
                    live.rotate(new_jti(), now, policy.refresh_token_ttl)
                    if await self._sessions.rotate(live, jti):
                        return self._answer(
                            client, tenant, owner, live, link, scopes, now, None, True, False
                        )
        # Everything else (a replay, an ended session, a disabled account, a concurrent
        # rotation that won) is judged again inside a transaction.
        async with s.uow() as uow:
            account = await uow.accounts.get(tenant.id, user_id)
            if account is None:
                raise invalid_grant("refresh token invalid")
            for _ in range(2):
                session = await uow.sessions.get(tenant.id, session_id)
                if session is None or session.user_id != account.id:
                    raise invalid_grant("refresh token invalid")
                now = s.clock.now()
                presented = session.classify(jti, now, policy.refresh_reuse_grace)
                if presented is Presented.DEAD:
                    raise invalid_grant("the session has ended")
                if presented is Presented.REUSED:
                    await self._end_reused(uow, tenant, session, account, client, now, info)
                    raise invalid_grant("refresh token reused")
                if not account.is_active:
                    raise invalid_grant("the account is disabled")
                # No ID token on refresh (OIDC Core §12.2 allows it): an RS256
                # signature would be most of the grant's cost.
                if presented is Presented.IN_GRACE:
                    return self._answer(
                        client, tenant, account, session, link, scopes, now, None, True, False
                    )
                session.rotate(new_jti(), now, policy.refresh_token_ttl)
                if await uow.sessions.rotate(session, jti):
                    await uow.commit()
                    return self._answer(
                        client, tenant, account, session, link, scopes, now, None, True, False
                    )
                await uow.rollback()
            raise invalid_grant("could not rotate")

    @staticmethod
    async def _end_reused(
        uow: UnitOfWork,
        tenant: Tenant,
        session: Session,
        account: Account,
        client: Client,
        now: datetime,
        info: ClientInfo,
    ) -> None:
        await uow.events.add(
            security_event(
                EventType.REFRESH_TOKEN_REUSED,
                tenant.id,
                now,
                info,
                user_id=account.id,
                session_id=session.id,
                client_id=client.client_id,
            )
        )
        await end_session(
            uow,
            tenant.id,
            account.id,
            session.id,
            now,
            info,
            "refresh_token_reused",
            client_id=client.client_id,
        )
        await uow.commit()


def user_claims(account: Account, scopes: tuple[str, ...]) -> dict[str, Any]:
    """The user's claims the scopes grant (OIDC Core §5.4)."""
    claims: dict[str, Any] = {}
    if "email" in scopes:
        claims["email"] = account.email.value
        claims["email_verified"] = account.is_verified
    if "profile" in scopes:
        claims["name"] = account.full_name
    return claims


# --- resource side: userinfo, revoke, introspect -------------------------------------


@attrs.frozen
class LiveToken:
    claims: dict[str, Any]
    account: Account | None


class ClientTokens:
    """Access and refresh tokens of clients, judged live or not."""

    def __init__(self, services: OAuthServices, session_reader: ActiveSessionReader) -> None:
        self._s = services
        self._sessions = session_reader

    async def live_access(self, token: str) -> LiveToken:
        """The claims of a live client access token; ``InvalidTokenError`` otherwise."""
        claims = self._s.tokens.decode_access_token(token)
        try:
            tenant_id = UUID(str(claims["tid"]))
        except ValueError:
            raise InvalidTokenError("malformed tid") from None
        sid = claims.get("sid")
        if sid is None:
            async with self._s.uow() as uow:
                if await uow.invalidated_tokens.contains(tenant_id, str(claims["jti"])):
                    raise InvalidTokenError("revoked")
                if await uow.oauth_clients.get(str(claims["client_id"])) is None:
                    raise InvalidTokenError("client gone")
            return LiveToken(claims, None)
        try:
            session_id, user_id = UUID(str(sid)), UUID(str(claims["sub"]))
        except ValueError:
            raise InvalidTokenError("malformed claims") from None
        account = await self._sessions.account_for_session(
            tenant_id, session_id, user_id, self._s.clock.now()
        )
        if account is None:
            raise InvalidTokenError("session ended")
        return LiveToken(claims, account)

    async def revoke(self, who: AuthenticatedClient, token: str, info: ClientInfo) -> None:
        """RFC 7009: end the session the token belongs to (for this client); a token that
        is not this client's, or not a token at all, changes nothing."""
        s = self._s
        tenant = who.tenant
        claims: dict[str, Any] | None = None
        for decode in (s.tokens.decode_refresh_token, s.tokens.decode_access_token):
            try:
                claims = decode(token)
                break
            except InvalidTokenError:
                continue
        if claims is None or claims.get("client_id") != who.client.client_id:
            return
        if claims.get("tid") != str(tenant.id):
            return
        now = s.clock.now()
        async with s.uow() as uow:
            sid = claims.get("sid")
            if sid is None:
                exp = datetime.fromtimestamp(float(claims["exp"]), tz=now.tzinfo)
                await uow.invalidated_tokens.add(tenant.id, str(claims["jti"]), exp, now)
            else:
                session_id = UUID(str(sid))
                link = await uow.client_sessions.get(tenant.id, session_id)
                if link is None or link.client_id != who.client.client_id:
                    return
                await end_session(
                    uow,
                    tenant.id,
                    link.user_id,
                    session_id,
                    now,
                    info,
                    "revoked_by_client",
                    client_id=who.client.client_id,
                )
            await uow.commit()


# --- grants (self-service) -----------------------------------------------------------


@attrs.frozen
class GrantView:
    client_id: str
    client_name: str
    scopes: tuple[str, ...]
    granted_at: datetime


class UserGrants:
    """The applications a user let in: list them, or revoke one (its consent and every
    session it holds for the user)."""

    def __init__(self, services: OAuthServices) -> None:
        self._s = services

    async def list(self, tenant_id: UUID, user_id: UUID) -> list[GrantView]:
        async with self._s.uow() as uow:
            consents = await uow.consents.list_for_user(tenant_id, user_id)
            views = []
            for consent in consents:
                client = await uow.oauth_clients.get(consent.client_id)
                if client is not None:
                    views.append(
                        GrantView(client.client_id, client.name, consent.scopes, consent.granted_at)
                    )
        return views

    async def revoke(
        self,
        tenant_id: UUID,
        user_id: UUID,
        client_id: str,
        info: ClientInfo = NO_CLIENT,
        by_session_id: UUID | None = None,
    ) -> None:
        """``ClientNotFoundError`` when the user has no grant nor session of the client."""
        async with self._s.uow() as uow:
            now = self._s.clock.now()
            forgot = await uow.consents.delete(tenant_id, user_id, client_id)
            links = await uow.client_sessions.list_for_user(tenant_id, user_id, client_id)
            ended = 0
            for link in links:
                if await end_session(
                    uow,
                    tenant_id,
                    user_id,
                    link.session_id,
                    now,
                    info,
                    "revoked_by_user",
                    by_session_id=by_session_id,
                    client_id=client_id,
                ):
                    ended += 1
            if not forgot and not ended:
                raise ClientNotFoundError(client_id)  # rolls back: nothing changed
            await uow.events.add(
                security_event(
                    EventType.OAUTH_CONSENT_REVOKED,
                    tenant_id,
                    now,
                    info,
                    user_id=user_id,
                    session_id=by_session_id,
                    client_id=client_id,
                )
            )
            await uow.commit()


# --- RP-initiated logout -------------------------------------------------------------


@attrs.frozen
class LogoutRequest:
    id_token_hint: str | None
    client_id: str | None
    post_logout_redirect_uri: str | None
    state: str | None
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class LoggedOut:
    """Where the browser goes: the client's registered URI (with ``state``), or None for
    the service's own page."""

    redirect_uri: str | None
    state: str | None


class RpInitiatedLogout:
    """OpenID Connect RP-Initiated Logout 1.0: end the browser session (and the client
    sessions opened from it); go back only to a registered post-logout URI."""

    def __init__(self, services: OAuthServices, browsers: BrowserSessions) -> None:
        self._s = services
        self._browsers = browsers

    async def __call__(self, request: LogoutRequest, info: ClientInfo = NO_CLIENT) -> LoggedOut:
        client_id = request.client_id
        hinted_sid: str | None = None
        if request.id_token_hint:
            try:
                hint = self._s.tokens.decode_id_token_hint(request.id_token_hint)
            except InvalidTokenError:
                raise invalid_request("id_token_hint is not an ID token of this issuer") from None
            audience = hint.get("aud")
            if client_id is not None and audience != client_id:
                raise invalid_request("client_id differs from the ID token's audience")
            client_id = str(audience) if isinstance(audience, str) else None
            hinted_sid = str(hint.get("sid")) if hint.get("sid") else None
        client: Client | None = None
        if client_id is not None:
            async with self._s.uow() as uow:
                client = await uow.oauth_clients.get(client_id)
            if client is None:
                raise invalid_request("unknown client")
        redirect = request.post_logout_redirect_uri
        if redirect is not None:
            if client is None:
                raise invalid_request("post_logout_redirect_uri needs id_token_hint or client_id")
            if redirect not in client.post_logout_redirect_uris:
                raise invalid_request("post_logout_redirect_uri is not registered")
        if client is not None:
            await self._end(client.tenant_id, request.cookies, hinted_sid, info)
        return LoggedOut(redirect, request.state if redirect else None)

    async def _end(
        self,
        tenant_id: UUID,
        cookies: Mapping[str, str],
        hinted_sid: str | None,
        info: ClientInfo,
    ) -> None:
        browser = await self._browsers.signed_in(tenant_id, cookies)
        ended: list[UUID] = []
        if browser is not None:
            ended.append(browser.session_id)
        async with self._s.uow() as uow:
            now = self._s.clock.now()
            if browser is not None:
                for link in await uow.client_sessions.list_for_browser_session(
                    tenant_id, browser.session_id
                ):
                    ended.append(link.session_id)
            if hinted_sid is not None:
                try:
                    ended.append(UUID(hinted_sid))
                except ValueError:
                    pass
            for session_id in dict.fromkeys(ended):
                session = await uow.sessions.get(tenant_id, session_id)
                if session is None:
                    continue
                await end_session(uow, tenant_id, session.user_id, session_id, now, info, "logout")
            await uow.commit()


# --- back-channel logout -------------------------------------------------------------

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_LOG = logging.getLogger("identity.oauth")


class DeliverBackchannelLogouts:
    """OpenID Connect Back-Channel Logout 1.0: every client session that ended, for any
    reason (logout, logout-all, password change or reset, disable, delete, revocation,
    expiry), earns its client a signed logout token, POSTed to its
    ``backchannel_logout_uri`` by the webhook sender of section 10 (SSRF guard at
    connect time, no redirects, timeout) on the webhook retry schedule. The links are
    the durable queue: a crash or restart loses nothing."""

    LEASE = timedelta(seconds=60)
    BATCH = 20

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sender: WebhookSender,
        tokens: OAuthTokenCodec,
        clock: Clock,
        *,
        schedule: tuple[timedelta, ...] = RETRY_SCHEDULE,
    ) -> None:
        self._uow = uow
        self._sender = sender
        self._tokens = tokens
        self._clock = clock
        self._schedule = schedule

    async def __call__(self) -> int:
        now = self._clock.now()
        async with self._uow() as uow:
            ended = await uow.client_sessions.claim_ended(now, self.BATCH, self.LEASE)
            await uow.commit()
        if not ended:
            return 0
        outcomes = await asyncio.gather(*(self._send(item, now) for item in ended))
        async with self._uow() as uow:
            await uow.client_sessions.forget(
                [
                    item.link.session_id
                    for item, retry in zip(ended, outcomes, strict=True)
                    if retry is None
                ]
            )
            for item, retry in zip(ended, outcomes, strict=True):
                if retry is not None:
                    await uow.client_sessions.retry_at(item.link.session_id, retry)
            await uow.commit()
        return len(ended)

    async def _send(self, item: EndedClientSession, now: datetime) -> datetime | None:
        """None when done (delivered, nobody to tell, or given up); else the retry time."""
        if not item.backchannel_logout_uri:
            return None
        link = item.link
        token = self._tokens.encode_logout_token(
            {
                "aud": link.client_id,
                "iat": int(now.timestamp()),
                "exp": int(now.timestamp()) + 120,
                "jti": new_jti(),
                "sid": str(link.session_id),
                "sub": str(link.user_id),
                "events": {BACKCHANNEL_EVENT: {}},
            },
            item.id_token_alg,
        )
        body = urlencode({"logout_token": token}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            status: int | None = await self._sender.post(item.backchannel_logout_uri, body, headers)
        except WebhookDeliveryError as error:
            status = None
            _LOG.info(
                "back-channel logout not delivered",
                extra={"client_id": link.client_id, "error": str(error)},
            )
        if status is not None and 200 <= status < 300:
            return None
        retry = next_attempt_after(link.logout_attempts, now, self._schedule)
        if retry is None:
            _LOG.warning("back-channel logout given up", extra={"client_id": link.client_id})
        return retry
