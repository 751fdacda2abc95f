"""A small OpenID Connect provider served by aiohttp on 127.0.0.1, for tests.

Usage::

    @pytest.fixture
    async def provider() -> AsyncIterator[FakeOidcProvider]:
        async with FakeOidcProvider() as provider:
            yield provider

    async def test_x(provider: FakeOidcProvider, session: aiohttp.ClientSession) -> None:
        google = GoogleIdentityProvider(provider.discovery_url, http=session)
        client = provider.client                         # OAuthClient(client_id, secret)
        provider.next_identity(sub="123", email="ann@example.com", email_verified=True)
        url = await google.authorization_url(client, redirect_uri=..., state=..., ...)
        callback = await provider.browser_authorize(url)  # follows /authorize like a browser
        # callback is redirect_uri?code=...&state=... (or ?error=...&state=...)

Attributes: ``issuer``, ``base_url``, ``discovery_url``, ``client``,
``authorize_requests`` (list of ``AuthorizeRequest``), ``token_requests``
(list of the form dicts posted to /token), ``discovery_fetches`` and
``jwks_fetches`` (counters).

Misbehaviour, per test, with ``provider.misbehave(...)`` (see ``Misbehaviour``):
wrong ``nonce``/``aud``/``iss``, ``expired``, ``unknown_key`` (kid not in the
JWKS), ``alg="none"`` or ``alg="HS256"`` (HMAC keyed with the public key PEM:
the classic confusion attack), ``token_status=500``, ``authorize_error``
("access_denied"), ``token_hang`` (the token endpoint never answers),
``token_body`` (a raw, e.g. malformed, token response).
``provider.rotate_key()`` makes a new key: published in the JWKS from now on
and used to sign the next ID tokens. Endpoints: /.well-known/openid-configuration,
/authorize, /token, /jwks, /userinfo.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from functools import cache
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from identity.domain.identities import OAuthClient

__all__ = [
    "AuthorizeRequest",
    "FakeOidcProvider",
    "Identity",
    "Misbehaviour",
]


@attrs.frozen
class Identity:
    """The person the provider signs in next."""

    sub: str = "1234567890"
    email: str | None = "person@example.com"
    email_verified: bool | str = True
    name: str | None = "Test Person"


@attrs.frozen
class Misbehaviour:
    """Ways the provider can go wrong; the defaults behave."""

    nonce: str | None = None  # put this nonce in the ID token instead of the requested one
    aud: str | None = None
    iss: str | None = None
    azp: str | None = None
    expired: bool = False
    unknown_key: bool = False
    alg: str = "RS256"  # "none" or "HS256" to forge
    token_status: int | None = None  # e.g. 500: /token answers this status
    token_hang: bool = False
    token_body: str | None = None  # answer /token with this raw body (status 200)
    authorize_error: str | None = None  # e.g. "access_denied"


@attrs.frozen
class AuthorizeRequest:
    """What the relying party sent to /authorize."""

    client_id: str
    redirect_uri: str
    response_type: str
    scope: str
    state: str
    nonce: str
    code_challenge: str
    code_challenge_method: str


@attrs.frozen
class _Grant:
    request: AuthorizeRequest
    identity: Identity


@attrs.frozen
class _SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@cache
def _rsa_key(index: int) -> rsa.RSAPrivateKey:
    # Key generation costs tens of milliseconds: share a small pool across tests.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeOidcProvider:
    """An OIDC provider on 127.0.0.1 whose behaviour each test controls."""

    def __init__(
        self,
        *,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",
        issuer: str | None = None,
    ) -> None:
        self.client = OAuthClient(client_id=client_id, client_secret=client_secret)
        self._issuer_override = issuer
        self._server = TestServer(self._app(), host="127.0.0.1")
        self._keys = [_SigningKey(kid=f"kid-{secrets.token_hex(4)}", private=_rsa_key(0))]
        self._stranger = _SigningKey(kid=f"kid-{secrets.token_hex(4)}", private=_rsa_key(1))
        self._identity = Identity()
        self._misbehaviour = Misbehaviour()
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, Identity] = {}
        self._hang = asyncio.Event()  # never set: a hanging token endpoint waits on it
        self.authorize_requests: list[AuthorizeRequest] = []
        self.token_requests: list[dict[str, str]] = []
        self.discovery_fetches = 0
        self.jwks_fetches = 0

    async def __aenter__(self) -> FakeOidcProvider:
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving; later requests to the provider fail to connect."""
        self._hang.set()  # let a hanging /token handler finish so shutdown is quick
        await self._server.close()

    @property
    def base_url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    @property
    def issuer(self) -> str:
        return self._issuer_override or self.base_url

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    def next_identity(self, **fields: Any) -> Identity:
        """Sign in this person from now on (fields of ``Identity``)."""
        self._identity = Identity(**fields)
        return self._identity

    def misbehave(self, **fields: Any) -> None:
        """Replace the misbehaviour (fields of ``Misbehaviour``); no arguments = behave."""
        self._misbehaviour = Misbehaviour(**fields)

    def rotate_key(self) -> str:
        """Publish a new key and sign with it from now on; returns its kid."""
        key = _SigningKey(kid=f"kid-{secrets.token_hex(4)}", private=_rsa_key(1 + len(self._keys)))
        self._keys.append(key)
        return key.kid

    async def browser_authorize(self, authorization_url: str) -> str:
        """GET the authorization URL like a browser; return the redirect back (Location)."""
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(authorization_url, allow_redirects=False) as response,
        ):
            if response.status != 302:
                raise AssertionError(f"/authorize answered {response.status}")
            return response.headers["Location"]

    # --- the provider's endpoints ---

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/userinfo", self._userinfo)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_fetches += 1
        base = self.base_url
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response({"keys": [key.jwk() for key in self._keys]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        fields = attrs.fields_dict(AuthorizeRequest)
        auth = AuthorizeRequest(**{name: q.get(name, "") for name in fields})
        self.authorize_requests.append(auth)
        if auth.client_id != self.client.client_id or not auth.redirect_uri:
            raise web.HTTPBadRequest(text="unknown client or missing redirect_uri")
        if self._misbehaviour.authorize_error:
            params = {"error": self._misbehaviour.authorize_error, "state": auth.state}
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = _Grant(request=auth, identity=self._identity)
            params = {"code": code, "state": auth.state}
        separator = "&" if "?" in auth.redirect_uri else "?"
        raise web.HTTPFound(f"{auth.redirect_uri}{separator}{urlencode(params)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        bad = self._misbehaviour
        if bad.token_hang:
            await self._hang.wait()
        if bad.token_body is not None:
            return web.Response(text=bad.token_body, content_type="application/json")
        if bad.token_status is not None:
            return web.json_response({"error": "server_error"}, status=bad.token_status)
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client.client_id,
            self.client.client_secret,
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._grants.pop(form.get("code", ""), None)  # codes are single use
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or grant.request.redirect_uri != form.get("redirect_uri")
            or not _pkce_matches(form.get("code_verifier", ""), grant.request.code_challenge)
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant.identity
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": grant.request.scope,
                "id_token": self._id_token(grant),
            }
        )

    async def _userinfo(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        identity = self._access_tokens.get(token)
        if identity is None:
            raise web.HTTPUnauthorized()
        return web.json_response({"sub": identity.sub, **self._profile(identity)})

    # --- ID tokens ---

    def _id_token(self, grant: _Grant) -> str:
        bad = self._misbehaviour
        now = int(time.time())
        issued = now - 7200 if bad.expired else now
        claims: dict[str, Any] = {
            "iss": bad.iss or self.issuer,
            "aud": bad.aud or self.client.client_id,
            "azp": bad.azp or self.client.client_id,
            "sub": grant.identity.sub,
            "iat": issued,
            "exp": issued + 3600,
            "nonce": bad.nonce or grant.request.nonce,
            **self._profile(grant.identity),
        }
        key = self._stranger if bad.unknown_key else self._keys[-1]
        return _sign(claims, key, bad.alg)

    @staticmethod
    def _profile(identity: Identity) -> dict[str, Any]:
        profile: dict[str, Any] = {"email_verified": identity.email_verified}
        if identity.email is not None:
            profile["email"] = identity.email
        if identity.name is not None:
            profile["name"] = identity.name
        return profile


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    return bool(verifier) and hmac.compare_digest(digest, challenge)


def _sign(claims: dict[str, Any], key: _SigningKey, alg: str) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}".encode("ascii")
    if alg == "none":
        signature = b""
    elif alg == "HS256":
        signature = hmac.new(key.public_pem(), signing_input, hashlib.sha256).digest()
    else:
        signature = key.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64(signature)}"


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
