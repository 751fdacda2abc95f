"""Any OpenID Connect provider: the authorization-code flow with PKCE and a nonce.

HTTP goes through aiohttp; the ID token is verified with joserfc (which
Authlib 1.9 builds on) and its claims with Authlib's ``CodeIDToken``, with
every option spelled out so that no check depends on a library default.
Google is this adapter under the name ``google`` (``google.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from identity.application.ports import Clock, IdentityProvider
from identity.domain.errors import OAuthFailedError, ProviderUnavailableError
from identity.domain.identities import ExternalIdentity, OAuthClient

logger = logging.getLogger(__name__)

# Asymmetric signatures only: accepting anything else opens the door to
# "alg: none" and HS256-with-the-public-key forgeries.
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
DEFAULT_SCOPES = "openid email profile"
_METADATA_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


class DiscoveryConfigurationError(Exception):
    """The discovery URL can never work (no such host, not found, not a discovery
    document): a configuration mistake, unlike a provider that is down for now."""


class OidcIdentityProvider(IdentityProvider):
    """One OpenID Connect provider, by name, as an ``IdentityProvider``.

    Provider metadata and the JWKS are fetched lazily and cached for the life
    of the object (a failed discovery is tried again on the next call); an ID
    token signed with an unknown ``kid`` triggers one JWKS refetch (key
    rotation), never more. ``http`` is a session the caller owns and closes.
    """

    def __init__(
        self,
        name: str,
        discovery_url: str,
        *,
        http: aiohttp.ClientSession,
        scopes: str = DEFAULT_SCOPES,
        leeway_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._scopes = scopes
        self._discovery_url = discovery_url
        self._http = http
        self._leeway = int(leeway_seconds)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._clock = clock
        self._metadata: dict[str, str] | None = None
        self._jwks: KeySet | None = None
        # One fetch at a time: a burst of first logins must not stampede the provider.
        self._lock = asyncio.Lock()

    async def authorization_url(
        self,
        client: OAuthClient,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """The code-flow URL; ``ProviderUnavailableError`` when discovery fails."""
        metadata = await self._load_metadata()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "scope": self._scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return _add_query(metadata["authorization_endpoint"], params)

    async def exchange(
        self,
        client: OAuthClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        nonce: str,
    ) -> ExternalIdentity:
        """Exchange ``code`` and validate the ID token (see the port for the errors)."""
        if not (code and nonce and code_verifier):
            raise OAuthFailedError("incomplete sign-in request")
        try:
            metadata = await self._load_metadata()
            tokens = await self._redeem(metadata, client, code, redirect_uri, code_verifier)
            claims = await self._verify_id_token(metadata, client, tokens, nonce)
            return _identity(self.name, claims)
        except (OAuthFailedError, ProviderUnavailableError):
            raise
        except Exception as error:
            # The contract promises one exception type; log the type only, since a
            # message from a library could echo token material.
            logger.error("unexpected error during OIDC exchange: %s", type(error).__name__)
            raise OAuthFailedError("sign-in with the provider failed") from None

    async def _redeem(
        self,
        metadata: Mapping[str, str],
        client: OAuthClient,
        code: str,
        redirect_uri: str,
        code_verifier: str,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "code_verifier": code_verifier,
        }
        status, body = await self._request("POST", metadata["token_endpoint"], data=form)
        if status >= 500:
            logger.warning("OIDC token endpoint failed: status=%s", status)
            raise ProviderUnavailableError("the provider is unavailable")
        if status != 200 or "error" in body:
            error = body.get("error")
            logger.warning(
                "OIDC token endpoint refused the code: status=%s error=%s",
                status,
                error if isinstance(error, str) else None,
            )
            raise OAuthFailedError("the provider refused the sign-in")
        if not isinstance(body.get("id_token"), str):
            raise OAuthFailedError("the provider returned no ID token")
        return body

    async def _verify_id_token(
        self,
        metadata: Mapping[str, str],
        client: OAuthClient,
        tokens: Mapping[str, Any],
        nonce: str,
    ) -> dict[str, Any]:
        id_token: str = tokens["id_token"]
        keys = await self._load_jwks(metadata, refresh=False)
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
            except InvalidKeyIdError:
                keys = await self._load_jwks(metadata, refresh=True, stale=keys)
                token = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
            options = {
                "iss": {
                    "essential": True,
                    "values": sorted(self.accepted_issuers(metadata["issuer"])),
                },
                "aud": {"essential": True, "value": client.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            }
            params = {
                "nonce": nonce,
                "client_id": client.client_id,
                "access_token": tokens.get("access_token"),
            }
            claims = CodeIDToken(token.claims, token.header, options, params)
            claims.validate(now=self._now(), leeway=self._leeway)
        except JoseError as error:
            # The error class and claim name are safe to log; the token is not.
            logger.warning("OIDC ID token rejected: %s", type(error).__name__)
            raise OAuthFailedError("the ID token is invalid") from None
        return dict(token.claims)

    def accepted_issuers(self, issuer: str) -> frozenset[str]:
        """The ``iss`` values an ID token may carry: exactly the discovered issuer."""
        return frozenset({issuer})

    async def discover(self) -> None:
        """Fetch the provider metadata now (at start-up).

        Raises ``DiscoveryConfigurationError`` when the URL can never work (the
        host does not resolve, a 4xx, not a discovery document) and
        ``ProviderUnavailableError`` when the provider is down for now
        (refused, timed out, 5xx): it is then tried again on first use.
        """
        try:
            await self._load_metadata()
        except _MisconfiguredError as error:
            raise DiscoveryConfigurationError(str(error)) from None

    async def _load_metadata(self) -> dict[str, str]:
        if self._metadata is not None:
            return self._metadata
        async with self._lock:
            if self._metadata is None:
                status, body = await self._request("GET", self._discovery_url, discovery=True)
                if status >= 500:
                    logger.warning("OIDC discovery failed: status=%s", status)
                    raise ProviderUnavailableError("the provider is unavailable")
                if status != 200 or not all(isinstance(body.get(k), str) for k in _METADATA_KEYS):
                    logger.warning("OIDC discovery document unusable: status=%s", status)
                    raise _MisconfiguredError(
                        f"answered {status}"
                        if status != 200
                        else "the answer is not an OpenID Connect discovery document"
                    )
                self._metadata = {k: body[k] for k in _METADATA_KEYS}
            return self._metadata

    async def _load_jwks(
        self, metadata: Mapping[str, str], *, refresh: bool, stale: KeySet | None = None
    ) -> KeySet:
        async with self._lock:
            # With refresh, another task may already have replaced the stale set.
            if self._jwks is not None and not (refresh and self._jwks is stale):
                return self._jwks
            status, body = await self._request("GET", metadata["jwks_uri"])
            if status != 200:
                logger.warning("OIDC JWKS fetch failed: status=%s", status)
                raise ProviderUnavailableError("the provider is unavailable")
            try:
                self._jwks = KeySet.import_key_set(body)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError):
                logger.warning("OIDC JWKS is malformed")
                raise ProviderUnavailableError("the provider is unavailable") from None
            return self._jwks

    async def _request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        discovery: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP call answering a JSON object; network and decoding errors become ours."""
        try:
            async with self._http.request(
                method,
                url,
                data=data,
                timeout=self._timeout,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    # Not JSON: an error page from a proxy, or not an OIDC endpoint.
                    body = None
        except aiohttp.ClientConnectorDNSError:
            logger.warning("OIDC provider host does not resolve: %s", _path(url))
            if discovery:
                raise _MisconfiguredError("the host name does not resolve") from None
            raise ProviderUnavailableError("the provider is unavailable") from None
        except aiohttp.InvalidURL:
            raise _MisconfiguredError("not a usable URL") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.warning("OIDC provider unreachable: %s %s", type(error).__name__, _path(url))
            raise ProviderUnavailableError("the provider is unavailable") from None
        return status, body if isinstance(body, dict) else {}

    def _now(self) -> int:
        if self._clock is None:
            return int(time.time())
        return int(self._clock.now().timestamp())


class _MisconfiguredError(ProviderUnavailableError):
    """Discovery can never succeed with this URL; to a caller mid-flow, still 503."""


def _identity(provider: str, claims: Mapping[str, Any]) -> ExternalIdentity:
    email = claims.get("email")
    name = claims.get("name")
    verified = claims.get("email_verified")
    return ExternalIdentity(
        provider=provider,
        subject=claims["sub"],
        email=email if isinstance(email, str) and email else None,
        # Some providers send the string "true"; anything else is unverified.
        email_verified=verified is True or (isinstance(verified, str) and verified == "true"),
        name=name if isinstance(name, str) and name else None,
    )


def _add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
