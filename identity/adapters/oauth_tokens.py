"""The authorization server's JOSE work: RFC 9068 access tokens, ID tokens, client
refresh and logout tokens, and the specification checks taken from Authlib (PKCE S256,
``at_hash``) and PyJWT (``private_key_jwt`` client assertions against the client's JWKS).

Signing keys are the ring of ``JwtTokenCodec`` (read on every call, so a reloaded
ring signs at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
import jwt
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, compare_s256_code_challenge
from authlib.oidc.core.util import create_half_hash

from identity.adapters.jwt_tokens import (
    REFRESH_ALGORITHM,
    JwtTokenCodec,
    _reason,
    _unverified_header,
)
from identity.adapters.signing_keys import ALGORITHMS
from identity.application.ports import Clock, OAuthTokenCodec, WebhookTargetGuard
from identity.domain.errors import InvalidTokenError
from identity.domain.oauth import Client, invalid_client

ACCESS_TOKEN_TYPE: Final = "at+jwt"
REFRESH_TYPE: Final = "oauth-refresh"
LOGOUT_TYPE: Final = "logout+jwt"
JWKS_CACHE_SECONDS: Final = 300.0
ASSERTION_ALGORITHMS: Final = ["RS256", "ES256", "EdDSA", "PS256"]


class JoseOAuthTokens(OAuthTokenCodec):
    def __init__(
        self,
        codec: JwtTokenCodec,
        *,
        issuer: str,
        leeway_seconds: float,
        clock: Clock,
        http: Callable[[], aiohttp.ClientSession] | None = None,
        guard: WebhookTargetGuard | None = None,
    ) -> None:
        self._guard = guard
        self._codec = codec
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._clock = clock
        self._http = http
        self._jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._seen_assertions: dict[str, float] = {}

    # --- signing ---------------------------------------------------------------------

    def _sign(self, payload: Mapping[str, Any], *, typ: str, algorithm: str | None = None) -> str:
        ring = self._codec.keyring
        key = ring.current if algorithm is None else ring.current_for(algorithm)
        return jwt.encode(
            dict(payload),
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": typ},
        )

    def encode_access_token(self, claims: Mapping[str, Any]) -> str:
        return self._sign({"iss": self._issuer, **claims}, typ=ACCESS_TOKEN_TYPE)

    def encode_id_token(self, claims: Mapping[str, Any], algorithm: str) -> str:
        return self._sign({"iss": self._issuer, **claims}, typ="JWT", algorithm=algorithm)

    def encode_refresh_token(self, claims: Mapping[str, Any]) -> str:
        # MACed like /auth's refresh tokens (jwt_tokens.py): only this server reads them.
        payload = {"iss": self._issuer, "aud": self._issuer, "typ": REFRESH_TYPE, **claims}
        kid, mac_key = self._codec.refresh_mac()
        return jwt.encode(
            payload, mac_key, algorithm=REFRESH_ALGORITHM, headers={"kid": kid, "typ": "JWT"}
        )

    def encode_logout_token(self, claims: Mapping[str, Any], algorithm: str) -> str:
        return self._sign({"iss": self._issuer, **claims}, typ=LOGOUT_TYPE, algorithm=algorithm)

    # --- verifying -------------------------------------------------------------------

    def _verify(
        self,
        token: str,
        *,
        typ_header: str | None,
        audience: str | None,
        check_expiry: bool = True,
        maced: bool = False,
    ) -> dict[str, Any]:
        """``maced``: a refresh token, which may carry this server's MAC (``HS256``)."""
        if not isinstance(token, str) or len(token) > 8192 or token.count(".") != 2:
            raise InvalidTokenError("malformed token")
        header = _unverified_header(token)
        kid, alg = header.get("kid"), header.get("alg")
        mac = maced and alg == REFRESH_ALGORITHM
        if not isinstance(kid, str) or not isinstance(alg, str) or not (mac or alg in ALGORITHMS):
            raise InvalidTokenError("algorithm not allowed")
        if typ_header is not None and header.get("typ") != typ_header:
            raise InvalidTokenError("wrong token type")
        verifying_key: Any
        if mac:
            verifying_key = self._codec.refresh_mac(kid)[1]
        else:
            try:
                key = self._codec.keyring.key(kid)
            except KeyError:
                raise InvalidTokenError("unknown signing key") from None
            if key.algorithm != alg:
                raise InvalidTokenError("algorithm not allowed")
            verifying_key = key.public_key
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                verifying_key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=audience,
                options={
                    "require": ["iss", "exp", "iat", "jti", "sub"],
                    "verify_aud": audience is not None,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(_reason(exc)) from None
        except (ValueError, TypeError, RecursionError):
            raise InvalidTokenError("malformed token") from None
        exp = payload.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidTokenError("malformed time claim")
        if check_expiry and exp <= self._clock.now().timestamp() - self._leeway:
            raise InvalidTokenError("token expired")
        return payload

    def decode_access_token(self, token: str) -> dict[str, Any]:
        payload = self._verify(token, typ_header=ACCESS_TOKEN_TYPE, audience=None)
        if not isinstance(payload.get("client_id"), str) or not isinstance(payload.get("tid"), str):
            raise InvalidTokenError("not an access token of a client")
        return payload

    def decode_refresh_token(self, token: str) -> dict[str, Any]:
        payload = self._verify(token, typ_header="JWT", audience=self._issuer, maced=True)
        if payload.get("typ") != REFRESH_TYPE:
            raise InvalidTokenError("not a client refresh token")
        return payload

    def decode_id_token_hint(self, token: str) -> dict[str, Any]:
        payload = self._verify(token, typ_header="JWT", audience=None, check_expiry=False)
        if "azp" not in payload or payload.get("typ") == REFRESH_TYPE:
            raise InvalidTokenError("not an ID token")
        return payload

    # --- specification checks --------------------------------------------------------

    def pkce_s256_matches(self, verifier: str, challenge: str) -> bool:
        if not CODE_VERIFIER_PATTERN.match(verifier):
            return False
        return bool(compare_s256_code_challenge(verifier, challenge))

    def at_hash(self, access_token: str, algorithm: str) -> str:
        half = create_half_hash(access_token, algorithm)
        assert isinstance(half, bytes)
        return half.decode("ascii").rstrip("=")

    async def verify_client_assertion(self, assertion: str, client: Client, audience: str) -> None:
        """RFC 7523 ``private_key_jwt``: signed by a key of the client's JWKS, ``iss`` and
        ``sub`` the client, ``aud`` the token endpoint (or the issuer), unexpired, and
        its ``jti`` not seen before. Raises ``invalid_client``."""
        try:
            header = _unverified_header(assertion)
        except InvalidTokenError:
            raise invalid_client("malformed client assertion") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise invalid_client("client assertion algorithm not allowed")
        jwks = await self._client_jwks(client)
        try:
            key_set = jwt.PyJWKSet.from_dict(jwks)
        except jwt.PyJWTError:
            raise invalid_client("the client's JWKS holds no usable key") from None
        kid = header.get("kid")
        candidates = [key for key in key_set.keys if kid is None or key.key_id == kid]
        for candidate in candidates:
            try:
                claims = jwt.decode(
                    assertion,
                    candidate.key,
                    algorithms=[str(alg)],
                    audience=[audience, self._issuer],
                    issuer=client.client_id,
                    leeway=self._leeway,
                    options={"require": ["iss", "sub", "aud", "exp", "jti"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise invalid_client("client assertion refused") from None
            if claims.get("sub") != client.client_id:
                raise invalid_client("client assertion refused")
            self._remember_assertion(str(claims["jti"]), float(claims["exp"]))
            return
        raise invalid_client("client assertion refused")

    def _remember_assertion(self, jti: str, expires: float) -> None:
        now = time.time()
        if len(self._seen_assertions) > 10_000:
            self._seen_assertions = {k: v for k, v in self._seen_assertions.items() if v > now}
        if jti in self._seen_assertions:
            raise invalid_client("client assertion replayed")
        self._seen_assertions[jti] = expires

    async def _client_jwks(self, client: Client) -> dict[str, Any]:
        if client.jwks:
            return dict(client.jwks)
        if not client.jwks_uri or self._http is None:
            raise invalid_client("the client has no keys")
        cached = self._jwks_cache.get(client.jwks_uri)
        if cached is not None and time.monotonic() - cached[0] < JWKS_CACHE_SECONDS:
            return cached[1]
        if self._guard is not None:
            # The webhook queue's SSRF rules: no private, loopback or link-local targets.
            try:
                await self._guard.check(client.jwks_uri)
            except Exception:
                raise invalid_client("the client's JWKS address is refused") from None
        try:
            async with self._http().get(
                client.jwks_uri, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status != 200:
                    raise invalid_client("the client's JWKS could not be fetched")
                document = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise invalid_client("the client's JWKS could not be fetched") from None
        if not isinstance(document, dict):
            raise invalid_client("the client's JWKS is not a JWK set")
        self._jwks_cache[client.jwks_uri] = (time.monotonic(), document)
        return document
