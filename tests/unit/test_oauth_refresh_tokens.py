"""The OAuth server's client refresh tokens: MACed under the ring key's derived key,
like /auth's refresh tokens; ones signed by an older release still verify."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from identity.adapters.clock import SystemClock
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.oauth_tokens import REFRESH_TYPE, JoseOAuthTokens
from identity.adapters.signing_keys import KeyEncryptor, KeyRing, generate_signing_key
from identity.domain.errors import InvalidTokenError
from identity.domain.tokens import RefreshClaims

ISSUER = "https://id.example"
ENCRYPTOR = KeyEncryptor("test-master-secret")


def _tokens() -> JoseOAuthTokens:
    stored = [generate_signing_key(alg, ENCRYPTOR, datetime.now(UTC)) for alg in ("EdDSA", "RS256")]
    ring = KeyRing.load(stored, ENCRYPTOR, "EdDSA")
    codec = JwtTokenCodec(ring, issuer=ISSUER, audience="app", leeway_seconds=30)
    return JoseOAuthTokens(codec, issuer=ISSUER, leeway_seconds=30, clock=SystemClock())


@pytest.fixture(scope="module")
def tokens() -> JoseOAuthTokens:
    return _tokens()


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "user-1", "jti": "jti-1", "iat": now, "exp": now + 3600, "client_id": "c1"}


def _header(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def test_a_client_refresh_token_is_maced_and_verifies(tokens: JoseOAuthTokens) -> None:
    token = tokens.encode_refresh_token(_claims())
    ring = tokens._codec.keyring
    assert _header(token) == {"alg": "HS256", "kid": ring.current.kid, "typ": "JWT"}
    payload = tokens.decode_refresh_token(token)
    assert (payload["typ"], payload["jti"], payload["client_id"]) == (REFRESH_TYPE, "jti-1", "c1")
    # Never an access token, nor an ID token hint.
    with pytest.raises(InvalidTokenError):
        tokens.decode_access_token(token)
    with pytest.raises(InvalidTokenError):
        tokens.decode_id_token_hint(token)


def test_one_signed_by_an_older_release_still_verifies(tokens: JoseOAuthTokens) -> None:
    key = tokens._codec.keyring.current
    payload = {"iss": ISSUER, "aud": ISSUER, "typ": REFRESH_TYPE, **_claims()}
    legacy = jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
    assert tokens.decode_refresh_token(legacy)["jti"] == "jti-1"


def test_forged_macs_and_other_refresh_tokens_are_refused(tokens: JoseOAuthTokens) -> None:
    ring = tokens._codec.keyring
    kid = ring.current.kid
    payload = {"iss": ISSUER, "aud": ISSUER, "typ": REFRESH_TYPE, **_claims()}
    public = ring.public_key(kid).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    other = _tokens().encode_refresh_token(_claims())
    forged_header = jwt.encode(payload, public, algorithm="HS256", headers={"kid": kid})
    for token in (
        forged_header,  # keyed with what the JWKS publishes
        jwt.encode(payload, b"k" * 32, algorithm="HS256", headers={"kid": "nope"}),
        other,  # another server's key: its kid is unknown here
    ):
        with pytest.raises(InvalidTokenError):
            tokens.decode_refresh_token(token)
    # /auth's refresh token is MACed with the same key but is of another type and audience.
    now = datetime.now(UTC).replace(microsecond=0)
    session_token = tokens._codec.encode_refresh(
        RefreshClaims(
            subject=uuid.uuid4(),
            session_id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            token_id="jti-2",
            issued_at=now,
            expires_at=now.replace(year=now.year + 1),
        )
    )
    with pytest.raises(InvalidTokenError):
        tokens.decode_refresh_token(session_token)
