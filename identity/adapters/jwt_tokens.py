"""JWT encoding and strict verification of access and refresh tokens (PyJWT)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import UUID

import attrs
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.adapters.clock import SystemClock
from identity.adapters.signing_keys import ALGORITHMS, KeyRing, PublicKey, SigningKey
from identity.application.ports import Clock, TokenCodec
from identity.domain.errors import InvalidTokenError
from identity.domain.organizations import OrgClaims
from identity.domain.tokens import AccessClaims, RefreshClaims

TokenType = Literal["access", "refresh"]

_COMMON_CLAIMS: Final = ["iss", "aud", "sub", "iat", "exp", "jti", "sid", "typ", "tid"]
_ACCESS_CLAIMS: Final = [*_COMMON_CLAIMS, "email", "email_verified"]

# Short, fixed reasons for logs: PyJWT's own exception never leaves this module.
_REASONS: Final[Mapping[type[jwt.PyJWTError], str]] = {
    jwt.ExpiredSignatureError: "token expired",
    jwt.InvalidAudienceError: "wrong audience",
    jwt.InvalidIssuerError: "wrong issuer",
    jwt.ImmatureSignatureError: "token not yet valid",
    jwt.InvalidSignatureError: "bad signature",
    jwt.MissingRequiredClaimError: "missing claim",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
}


# Refresh tokens are read by this service alone, so they are MACed rather than
# signed: HMAC-SHA256 under a key derived from the private half of the ring key
# their kid names (it rotates with the ring, and the public JWKS cannot forge it).
# Verifying one costs a quarter of an Ed25519 verify, a fifth of a refresh.
# Refresh tokens signed before (EdDSA/RS256) keep verifying with the public key.
REFRESH_ALGORITHM: Final = "HS256"
_REFRESH_KEY_INFO: Final = b"identity refresh-token mac v1"


def refresh_mac_key(key: SigningKey) -> bytes:
    """The refresh-token MAC key of a ring key: HKDF-SHA256 of its private key."""
    material = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_REFRESH_KEY_INFO)
    return hkdf.derive(material)


@attrs.frozen
class _Verifier:
    algorithm: str
    key: PublicKey
    mac_key: bytes = attrs.field(repr=False)


def _reason(exc: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS.items():
        if isinstance(exc, kind):
            return reason
    return "malformed token"


def _unverified_header(token: str) -> dict[str, Any]:
    # Only the header segment: jwt.get_unverified_header would decode (and
    # validate char by char) the whole token a second time. PyJWT's strict
    # parse in jwt.decode still has the last word on the token's form.
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed token")
    return header


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _datetime(value: object) -> datetime:
    # bool is an int subclass; a JWT time is a plain number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTokenError("malformed time claim")
    return datetime.fromtimestamp(value, tz=UTC)


def _uuid(value: object) -> UUID:
    if not isinstance(value, str):
        raise InvalidTokenError("malformed identifier claim")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidTokenError("malformed identifier claim") from None


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidTokenError("malformed string claim")
    return value


def _aal(value: object) -> str:
    # Tokens signed before assurance levels existed carry none: they were aal1.
    if value not in ("aal1", "aal2"):
        raise InvalidTokenError("malformed aal claim")
    return str(value)


def _amr(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidTokenError("malformed amr claim")
    return tuple(value)


def _strings(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidTokenError(f"malformed {name} claim")
    return tuple(value)


def _org(payload: dict[str, Any]) -> OrgClaims | None:
    """The organization claims, all four or none."""
    if "org_id" not in payload:
        return None
    return OrgClaims(
        org_id=_uuid(payload["org_id"]),
        org_slug=_string(payload.get("org_slug")),
        org_roles=_strings(payload.get("org_roles"), "org_roles"),
        permissions=_strings(payload.get("permissions"), "permissions"),
    )


VERIFIED_ACCESS_CACHE_SIZE = 10_000


class JwtTokenCodec(TokenCodec):
    """Signs tokens with the ring's current key; verifies with the key named by ``kid``.

    The algorithm is never taken on trust from the token: it must be in the
    allow-list and equal to the algorithm of the key its ``kid`` names. Times
    (``exp``, ``iat``, ``nbf``) are checked against ``clock``, not PyJWT's own
    reading of the system time, so a test that moves the clock moves expiry too.
    """

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._clock = clock or SystemClock()
        self._keyring = keyring
        self._verifiers = self._build_verifiers(keyring)
        self._verified_access: dict[str, AccessClaims] = {}

    @staticmethod
    def _build_verifiers(keyring: KeyRing) -> dict[str, _Verifier]:
        return {
            k.kid: _Verifier(k.algorithm, k.public_key, refresh_mac_key(k)) for k in keyring.keys
        }

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    def refresh_mac(self, kid: str | None = None) -> tuple[str, bytes]:
        """(kid, MAC key) of refresh tokens: the current key's, or the one ``kid`` names.
        The OAuth server's client refresh tokens are MACed the same way."""
        kid = self._keyring.current.kid if kid is None else kid
        verifier = self._verifiers.get(kid)
        if verifier is None:
            raise InvalidTokenError("unknown signing key")
        return kid, verifier.mac_key

    def replace_keyring(self, keyring: KeyRing) -> None:
        """Swap in a reloaded ring (after ``identity keys rotate``)."""
        verifiers = self._build_verifiers(keyring)
        # Rebinding whole attributes keeps each read consistent without a lock.
        self._keyring, self._verifiers = keyring, verifiers
        self._verified_access = {}

    def encode_access(self, claims: AccessClaims) -> str:
        payload = self._payload("access", claims)
        payload["email"] = claims.email
        payload["email_verified"] = claims.email_verified
        payload["aal"] = claims.aal
        payload["amr"] = list(claims.amr)
        if claims.org is not None:
            payload["org_id"] = str(claims.org.org_id)
            payload["org_slug"] = claims.org.org_slug
            payload["org_roles"] = list(claims.org.org_roles)
            payload["permissions"] = list(claims.org.permissions)
        return self._sign(payload)

    def encode_refresh(self, claims: RefreshClaims) -> str:
        kid, mac_key = self.refresh_mac()
        return jwt.encode(
            self._payload("refresh", claims),
            mac_key,
            algorithm=REFRESH_ALGORITHM,
            headers={"kid": kid, "typ": "JWT"},
        )

    def decode_access(self, token: str) -> AccessClaims:
        """Verify an access token; a token verified before skips the signature check.

        Clients present one access token many times, and the signature check is
        most of the cost of an authenticated request. A remembered token is the
        exact string that verified (signature, iss, aud, typ); only its expiry
        can change, and it is checked again on every use.
        """
        cached = self._verified_access.get(token)
        if cached is not None:
            if self._clock.now().timestamp() < cached.expires_at.timestamp() + self._leeway:
                return cached
            del self._verified_access[token]
        claims = self._decode_access(token)
        if len(self._verified_access) >= VERIFIED_ACCESS_CACHE_SIZE:
            # Drop the oldest entry (dicts keep insertion order).
            self._verified_access.pop(next(iter(self._verified_access)), None)
        self._verified_access[token] = claims
        return claims

    def _decode_access(self, token: str) -> AccessClaims:
        payload = self._verify(token, "access", _ACCESS_CLAIMS)
        email_verified = payload["email_verified"]
        if not isinstance(email_verified, bool):
            raise InvalidTokenError("malformed email_verified claim")
        return AccessClaims(
            subject=_uuid(payload["sub"]),
            session_id=_uuid(payload["sid"]),
            tenant_id=_uuid(payload["tid"]),
            token_id=_string(payload["jti"]),
            email=_string(payload["email"]),
            email_verified=email_verified,
            issued_at=_datetime(payload["iat"]),
            expires_at=_datetime(payload["exp"]),
            aal=_aal(payload.get("aal", "aal1")),
            amr=_amr(payload.get("amr", [])),
            org=_org(payload),
        )

    def decode_refresh(self, token: str) -> RefreshClaims:
        payload = self._verify(token, "refresh", _COMMON_CLAIMS)
        return RefreshClaims(
            subject=_uuid(payload["sub"]),
            session_id=_uuid(payload["sid"]),
            tenant_id=_uuid(payload["tid"]),
            token_id=_string(payload["jti"]),
            issued_at=_datetime(payload["iat"]),
            expires_at=_datetime(payload["exp"]),
        )

    def _payload(self, typ: TokenType, claims: AccessClaims | RefreshClaims) -> dict[str, Any]:
        return {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(claims.subject),
            "iat": _timestamp(claims.issued_at),
            "exp": _timestamp(claims.expires_at),
            "jti": claims.token_id,
            "sid": str(claims.session_id),
            "typ": typ,
            "tid": str(claims.tenant_id),
        }

    def _sign(self, payload: dict[str, Any]) -> str:
        key = self._keyring.current
        return jwt.encode(
            payload,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": "JWT"},
        )

    def _key_for(self, token: str, typ: TokenType) -> tuple[str, PublicKey | bytes]:
        """The one algorithm and key this token may verify with, from its kid."""
        header = _unverified_header(token)
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not isinstance(alg, str):
            raise InvalidTokenError("token header lacks kid or alg")
        verifier = self._verifiers.get(kid)
        if verifier is None:
            raise InvalidTokenError("unknown signing key")
        if typ == "refresh" and alg == REFRESH_ALGORITHM:
            return alg, verifier.mac_key
        if alg not in ALGORITHMS or alg != verifier.algorithm:
            raise InvalidTokenError("algorithm not allowed")
        return alg, verifier.key

    def _verify(self, token: str, typ: TokenType, required: list[str]) -> dict[str, Any]:
        algorithm, key = self._key_for(token, typ)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                # The times are checked below, against our clock.
                options={
                    "require": required,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(_reason(exc)) from None
        except (ValueError, TypeError, RecursionError):
            # Defensive: PyJWT wraps nearly everything, but a leak must still be a 401.
            raise InvalidTokenError("malformed token") from None
        self._check_times(payload)
        if payload.get("typ") != typ:
            raise InvalidTokenError(f"token type is not {typ}")
        return payload

    def _check_times(self, payload: dict[str, Any]) -> None:
        """PyJWT's rules (exp in the past, iat or nbf in the future, with leeway)."""
        now = self._clock.now().timestamp()
        times = {name: _time_claim(payload, name) for name in ("iat", "nbf", "exp")}
        for name in ("iat", "nbf"):
            moment = times[name]
            if moment is not None and moment > now + self._leeway:
                raise InvalidTokenError("token not yet valid")
        expires = times["exp"]
        if expires is not None and expires <= now - self._leeway:
            raise InvalidTokenError("token expired")


def _time_claim(payload: Mapping[str, Any], name: str) -> int | None:
    if name not in payload:
        return None
    value = payload[name]
    # bool is an int subclass; a JWT time is a plain number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTokenError("malformed time claim")
    try:
        return int(value)
    except (ValueError, OverflowError):
        raise InvalidTokenError("malformed time claim") from None
