"""The issuer's signing keys: discovered, cached, refetched within bounds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import jwt

from identity_verifier._errors import InvalidToken, IssuerUnavailable
from identity_verifier._http import FETCH_TIMEOUT, FetchError, max_age, read_json

log = logging.getLogger("identity_verifier")

ALGORITHMS: Final = frozenset({"EdDSA", "RS256"})
DEFAULT_MAX_AGE: Final = 300.0
MAX_MAX_AGE: Final = 24 * 3600.0
# A token naming a kid we do not know may trigger a fetch at most this often,
# so a flood of junk kids cannot turn us into a JWKS hammer.
REFETCH_INTERVAL: Final = 30.0
# While no key set was ever loaded every request needs one; still bounded.
RETRY_WHEN_EMPTY: Final = 1.0

Session = Callable[[], Awaitable[aiohttp.ClientSession]]


@dataclass(frozen=True, slots=True)
class Key:
    algorithm: str
    key: Any  # a cryptography public key object, as PyJWT takes it


@dataclass(frozen=True, slots=True)
class Discovery:
    jwks_uri: str
    introspection_endpoint: str | None


def parse_jwks(document: object) -> dict[str, Key]:
    """The usable signing keys of a JWK set by kid; others are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("the JWKS has no key list")
    keys: dict[str, Key] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if jwk.algorithm_name in ALGORITHMS:
            keys[kid] = Key(jwk.algorithm_name, jwk.key)
    return keys


class KeyCache:
    """Signing keys by kid, as the issuer's JWKS publishes them.

    Keys are reused for the JWKS response's ``max-age`` (default 5 minutes).
    After that, or when a token names a kid not in the set, the set is fetched
    again, but at most once per ``REFETCH_INTERVAL``; every caller that needs
    a fetch while one runs waits for that one. A failed fetch keeps the keys
    already held, so a short outage of the issuer does not stop verification.
    """

    def __init__(self, issuer: str, session: Session, clock: Callable[[], float]) -> None:
        self._discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._issuer = issuer
        self._session = session
        self._clock = clock
        self._keys: Mapping[str, Key] = {}
        self._loaded = False
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._discovery: Discovery | None = None
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0  # JWKS requests made: for tests and metrics

    def cached(self, kid: str) -> Key | None:
        """The key, if held and still fresh: the path taken by nearly every call."""
        if self._clock() < self._fresh_until:
            return self._keys.get(kid)
        return None

    async def get(self, kid: str) -> Key:
        """The key named ``kid``, fetching the set again if needed and allowed.

        Raises ``InvalidToken`` for a kid the issuer does not publish and
        ``IssuerUnavailable`` when no key set could ever be fetched.
        """
        key = self.cached(kid)
        if key is not None:
            return key
        if self._fetching is None and self._may_fetch():
            self._fetching = asyncio.create_task(self._fetch())
            self._fetching.add_done_callback(self._fetched)
        if self._fetching is not None:
            # Shielded: a caller that gives up must not cancel the others' fetch.
            await asyncio.shield(self._fetching)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._loaded:
            raise IssuerUnavailable("the issuer's signing keys could not be fetched")
        raise InvalidToken("unknown signing key")

    async def introspection_endpoint(self) -> str:
        discovery = self._discovery or await self._discover()
        return discovery.introspection_endpoint or self._issuer.rstrip("/") + "/auth/introspect"

    async def close(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)

    def _may_fetch(self) -> bool:
        interval = REFETCH_INTERVAL if self._loaded else RETRY_WHEN_EMPTY
        return self._clock() - self._last_attempt >= interval

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetching = None

    async def _fetch(self) -> None:
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            discovery = self._discovery or await self._discover()
            session = await self._session()
            async with session.get(discovery.jwks_uri, timeout=FETCH_TIMEOUT) as response:
                keys = parse_jwks(await read_json(response))
                lifetime = max_age(
                    response.headers.get("Cache-Control"), DEFAULT_MAX_AGE, MAX_MAX_AGE
                )
        except (aiohttp.ClientError, TimeoutError, FetchError) as error:
            log.warning(
                "could not fetch the issuer's signing keys; keeping the ones held",
                extra={"error": str(error) or type(error).__name__, "issuer": self._issuer},
            )
            return
        self._keys, self._loaded = keys, True
        self._fresh_until = self._clock() + lifetime

    async def _discover(self) -> Discovery:
        session = await self._session()
        async with session.get(self._discovery_url, timeout=FETCH_TIMEOUT) as response:
            document = await read_json(response)
        if not isinstance(document, dict) or document.get("issuer") != self._issuer:
            # OpenID Connect Discovery 1.0, section 4.3: a document for another
            # issuer must not be used.
            raise FetchError("the discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise FetchError("the discovery document has no usable jwks_uri")
        endpoint = document.get("introspection_endpoint")
        self._discovery = Discovery(jwks_uri, endpoint if isinstance(endpoint, str) else None)
        return self._discovery
