import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import attrs
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.adapters.clock import ManualClock
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.signing_keys import (
    KeyEncryptor,
    KeyRing,
    StoredSigningKey,
    generate_signing_key,
)
from identity.domain.errors import InvalidTokenError
from identity.domain.tokens import AccessClaims, RefreshClaims

ISSUER = "https://id.example"
AUDIENCE = "example-app"
LEEWAY = 30.0
ENCRYPTOR = KeyEncryptor("test-master-secret")


def _now() -> datetime:
    # Whole seconds: JWT times are integers.
    return datetime.now(UTC).replace(microsecond=0)


def _stored(algorithm: str = "EdDSA", age: timedelta = timedelta(0)) -> StoredSigningKey:
    return generate_signing_key(algorithm, ENCRYPTOR, _now() - age)


def _codec(
    *stored: StoredSigningKey, issuer: str = ISSUER, audience: str = AUDIENCE
) -> JwtTokenCodec:
    ring = KeyRing.load(list(stored), ENCRYPTOR)
    return JwtTokenCodec(ring, issuer=issuer, audience=audience, leeway_seconds=LEEWAY)


def _access(
    lifetime: timedelta = timedelta(minutes=15), issued: datetime | None = None
) -> AccessClaims:
    iat = issued or _now()
    return AccessClaims(
        subject=uuid4(),
        session_id=uuid4(),
        tenant_id=uuid4(),
        token_id="jti-access",
        email="ada@example.com",
        email_verified=True,
        issued_at=iat,
        expires_at=iat + lifetime,
    )


def _refresh() -> RefreshClaims:
    iat = _now()
    return RefreshClaims(
        subject=uuid4(),
        session_id=uuid4(),
        tenant_id=uuid4(),
        token_id="jti-refresh",
        issued_at=iat,
        expires_at=iat + timedelta(days=30),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def ed_key() -> StoredSigningKey:
    return _stored("EdDSA")


@pytest.fixture
def codec(ed_key: StoredSigningKey) -> JwtTokenCodec:
    return _codec(ed_key)


# --- round trips and encoding -------------------------------------------------


def test_access_round_trip(codec: JwtTokenCodec) -> None:
    claims = _access()
    assert codec.decode_access(codec.encode_access(claims)) == claims


def test_refresh_round_trip(codec: JwtTokenCodec) -> None:
    claims = _refresh()
    assert codec.decode_refresh(codec.encode_refresh(claims)) == claims


def test_rs256_is_selectable() -> None:
    rs_codec = _codec(_stored("RS256"))
    token = rs_codec.encode_access(_access())
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert rs_codec.decode_access(token).email == "ada@example.com"


def test_encoded_header_and_claims(codec: JwtTokenCodec, ed_key: StoredSigningKey) -> None:
    claims = _access()
    token = codec.encode_access(claims)
    header = jwt.get_unverified_header(token)
    body = _claims_of(token)

    assert header == {"alg": "EdDSA", "kid": ed_key.kid, "typ": "JWT"}
    assert body == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(claims.subject),
        "iat": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": "jti-access",
        "sid": str(claims.session_id),
        "typ": "access",
        "tid": str(claims.tenant_id),
        "email": "ada@example.com",
        "email_verified": True,
        "aal": "aal1",
        "amr": [],
    }
    assert _claims_of(codec.encode_refresh(_refresh()))["typ"] == "refresh"
    assert "email" not in _claims_of(codec.encode_refresh(_refresh()))


def test_assurance_claims_round_trip(codec: JwtTokenCodec) -> None:
    claims = attrs.evolve(_access(), aal="aal2", amr=("pwd", "totp"))
    token = codec.encode_access(claims)
    assert _claims_of(token)["aal"] == "aal2"
    assert _claims_of(token)["amr"] == ["pwd", "totp"]
    assert codec.decode_access(token) == claims


# --- type confusion -----------------------------------------------------------


def test_refresh_token_is_not_an_access_token(codec: JwtTokenCodec) -> None:
    with pytest.raises(InvalidTokenError):
        codec.decode_access(codec.encode_refresh(_refresh()))


def test_access_token_is_not_a_refresh_token(codec: JwtTokenCodec) -> None:
    with pytest.raises(InvalidTokenError):
        codec.decode_refresh(codec.encode_access(_access()))


def test_typ_claim_alone_decides(codec: JwtTokenCodec) -> None:
    # Every access claim present, but typ says refresh: still not an access token.
    payload = _payload(codec) | {"typ": "refresh"}
    key = codec.keyring.current
    token = jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    with pytest.raises(InvalidTokenError, match="type"):
        codec.decode_access(token)


# --- forged tokens ------------------------------------------------------------


def _payload(codec: JwtTokenCodec) -> dict[str, Any]:
    return _claims_of(codec.encode_access(_access()))


def test_alg_none_is_rejected(codec: JwtTokenCodec, ed_key: StoredSigningKey) -> None:
    header = {"alg": "none", "kid": ed_key.kid, "typ": "JWT"}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_payload(codec)).encode())}."
    with pytest.raises(InvalidTokenError):
        codec.decode_access(token)


def test_hs256_with_public_key_as_secret_is_rejected() -> None:
    stored = _stored("RS256")
    rs_codec = _codec(stored)
    pem = rs_codec.keyring.public_key(stored.kid).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": stored.kid, "typ": "JWT"}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_payload(rs_codec)).encode())}"
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidTokenError, match="algorithm"):
        rs_codec.decode_access(f"{signing_input}.{_b64(signature)}")


def test_rs256_header_on_an_ed25519_kid_is_rejected(
    codec: JwtTokenCodec, ed_key: StoredSigningKey
) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_payload(codec), attacker, algorithm="RS256", headers={"kid": ed_key.kid})
    with pytest.raises(InvalidTokenError, match="algorithm"):
        codec.decode_access(token)


def test_eddsa_header_on_an_rsa_kid_is_rejected() -> None:
    rs = _stored("RS256")
    mixed = _codec(rs, _stored("EdDSA", age=timedelta(days=1)))
    ed_signed = _codec(_stored("EdDSA")).encode_access(_access())
    header, payload, signature = ed_signed.split(".")
    forged_header = _unb64(header) | {"kid": rs.kid}
    token = f"{_b64(json.dumps(forged_header).encode())}.{payload}.{signature}"
    with pytest.raises(InvalidTokenError, match="algorithm"):
        mixed.decode_access(token)


def test_unknown_kid_is_rejected(codec: JwtTokenCodec) -> None:
    other = _codec(_stored("EdDSA"))
    with pytest.raises(InvalidTokenError, match="unknown"):
        codec.decode_access(other.encode_access(_access()))


def test_token_of_another_ring_with_our_kid_is_rejected(
    codec: JwtTokenCodec, ed_key: StoredSigningKey
) -> None:
    # Same kid, different private key: the signature check must catch it.
    other = _codec(_stored("EdDSA"))
    header, payload, signature = other.encode_access(_access()).split(".")
    forged_header = _unb64(header) | {"kid": ed_key.kid}
    token = f"{_b64(json.dumps(forged_header).encode())}.{payload}.{signature}"
    with pytest.raises(InvalidTokenError):
        codec.decode_access(token)


def test_missing_kid_is_rejected(codec: JwtTokenCodec) -> None:
    key = codec.keyring.current
    token = jwt.encode(_payload(codec), key.private_key, algorithm="EdDSA")
    with pytest.raises(InvalidTokenError, match="kid"):
        codec.decode_access(token)


def test_tampered_payload_is_rejected(codec: JwtTokenCodec) -> None:
    header, payload, signature = codec.encode_access(_access()).split(".")
    tampered = _unb64(payload) | {"email": "mallory@example.com"}
    token = f"{header}.{_b64(json.dumps(tampered).encode())}.{signature}"
    with pytest.raises(InvalidTokenError, match="signature"):
        codec.decode_access(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9.e30."])
def test_garbage_is_rejected(codec: JwtTokenCodec, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        codec.decode_access(garbage)


def test_wrong_issuer_is_rejected(ed_key: StoredSigningKey) -> None:
    foreign = _codec(ed_key, issuer="https://evil.example")
    with pytest.raises(InvalidTokenError, match="issuer"):
        _codec(ed_key).decode_access(foreign.encode_access(_access()))


def test_wrong_audience_is_rejected(ed_key: StoredSigningKey) -> None:
    foreign = _codec(ed_key, audience="another-app")
    with pytest.raises(InvalidTokenError, match="audience"):
        _codec(ed_key).decode_access(foreign.encode_access(_access()))


def test_missing_required_claim_is_rejected(codec: JwtTokenCodec) -> None:
    payload = _payload(codec)
    del payload["sid"]
    key = codec.keyring.current
    token = jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    with pytest.raises(InvalidTokenError, match="missing"):
        codec.decode_access(token)


@pytest.mark.parametrize(
    "claims", [{"aal": "aal3"}, {"aal": None}, {"amr": "pwd"}, {"amr": [1]}], ids=str
)
def test_malformed_assurance_claims_are_rejected(
    codec: JwtTokenCodec, claims: dict[str, Any]
) -> None:
    key = codec.keyring.current
    token = jwt.encode(
        _payload(codec) | claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid}
    )
    with pytest.raises(InvalidTokenError):
        codec.decode_access(token)


def test_a_token_from_before_assurance_levels_is_aal1(codec: JwtTokenCodec) -> None:
    payload = _payload(codec)
    del payload["aal"], payload["amr"]
    key = codec.keyring.current
    token = jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    claims = codec.decode_access(token)
    assert (claims.aal, claims.amr) == ("aal1", ())


def test_malformed_subject_is_rejected(codec: JwtTokenCodec) -> None:
    payload = _payload(codec) | {"sub": "not-a-uuid"}
    key = codec.keyring.current
    token = jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    with pytest.raises(InvalidTokenError):
        codec.decode_access(token)


# --- expiry and leeway --------------------------------------------------------


def test_expired_beyond_leeway_is_rejected(codec: JwtTokenCodec) -> None:
    issued = _now() - timedelta(minutes=20)
    claims = _access(lifetime=timedelta(minutes=20) - timedelta(seconds=LEEWAY + 5), issued=issued)
    with pytest.raises(InvalidTokenError, match="expired"):
        codec.decode_access(codec.encode_access(claims))


def test_expired_inside_leeway_is_accepted(codec: JwtTokenCodec) -> None:
    issued = _now() - timedelta(minutes=20)
    claims = _access(lifetime=timedelta(minutes=20) - timedelta(seconds=LEEWAY - 10), issued=issued)
    assert codec.decode_access(codec.encode_access(claims)) == claims


# --- rotation -----------------------------------------------------------------


def test_rotation_new_key_signs_and_old_tokens_still_verify(ed_key: StoredSigningKey) -> None:
    codec = _codec(ed_key)
    old_token = codec.encode_access(_access())
    new_key = generate_signing_key("EdDSA", ENCRYPTOR, ed_key.created_at + timedelta(days=1))

    codec.replace_keyring(KeyRing.load([ed_key, new_key], ENCRYPTOR))
    new_token = codec.encode_access(_access())

    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert codec.decode_access(old_token).email == "ada@example.com"
    assert codec.decode_access(new_token).email == "ada@example.com"


def test_dropping_a_key_stops_its_tokens(ed_key: StoredSigningKey) -> None:
    codec = _codec(ed_key)
    old_token = codec.encode_access(_access())
    codec.replace_keyring(KeyRing.load([_stored("EdDSA")], ENCRYPTOR))
    with pytest.raises(InvalidTokenError, match="unknown"):
        codec.decode_access(old_token)


def test_deeply_nested_json_is_rejected_not_crashing(
    codec: JwtTokenCodec, ed_key: StoredSigningKey
) -> None:
    nested = _b64(b"[" * 100_000 + b"]" * 100_000)
    header = _b64(json.dumps({"alg": "EdDSA", "kid": ed_key.kid}).encode())
    for token in (f"{nested}.e30.sig", f"{header}.{nested}.sig"):
        with pytest.raises(InvalidTokenError):
            codec.decode_access(token)


# --- the cache of verified access tokens -------------------------------------


def test_a_remembered_access_token_is_verified_again_once_it_expires() -> None:
    clock = ManualClock(_now())
    ring = KeyRing.load([_stored()], ENCRYPTOR)
    codec = JwtTokenCodec(
        ring, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=LEEWAY, clock=clock
    )
    verifications = 0
    verify = codec._verify

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal verifications
        verifications += 1
        return verify(*args, **kwargs)

    codec._verify = counting  # type: ignore[method-assign]
    token = codec.encode_access(_access(issued=clock.now(), lifetime=timedelta(minutes=1)))
    codec.decode_access(token)
    codec.decode_access(token)
    assert verifications == 1  # the second use was answered from memory
    clock.advance(seconds=60 + LEEWAY + 1)
    with pytest.raises(InvalidTokenError, match="expired"):
        codec.decode_access(token)
    assert verifications == 2  # not answered from memory: verified again, and refused


def test_expiry_and_issue_time_follow_the_injected_clock_not_the_system_time() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)  # long past for the system clock
    clock = ManualClock(start)
    ring = KeyRing.load([_stored()], ENCRYPTOR)
    codec = JwtTokenCodec(
        ring, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=LEEWAY, clock=clock
    )
    token = codec.encode_refresh(_refresh_at(start + timedelta(hours=1)))
    with pytest.raises(InvalidTokenError, match="not yet valid"):
        codec.decode_refresh(token)  # issued an hour in this clock's future
    clock.advance(hours=1)
    assert codec.decode_refresh(token).issued_at == start + timedelta(hours=1)
    clock.advance(minutes=15, seconds=LEEWAY)
    with pytest.raises(InvalidTokenError, match="expired"):
        codec.decode_refresh(token)


def _refresh_at(issued: datetime) -> RefreshClaims:
    return RefreshClaims(
        subject=uuid4(),
        session_id=uuid4(),
        tenant_id=uuid4(),
        token_id="jti-refresh",
        issued_at=issued,
        expires_at=issued + timedelta(minutes=15),
    )


def test_a_remembered_access_token_is_forgotten_when_the_key_ring_changes() -> None:
    old, new = _stored(), _stored()
    codec = _codec(old)
    token = codec.encode_access(_access())
    codec.decode_access(token)
    codec.replace_keyring(KeyRing.load([new], ENCRYPTOR))  # the old key is gone
    with pytest.raises(InvalidTokenError):
        codec.decode_access(token)


def test_the_cache_never_outgrows_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import identity.adapters.jwt_tokens as module

    monkeypatch.setattr(module, "VERIFIED_ACCESS_CACHE_SIZE", 3)
    codec = _codec(_stored())
    tokens = [codec.encode_access(_access()) for _ in range(5)]
    for token in tokens:
        codec.decode_access(token)
    assert len(codec._verified_access) == 3
    assert all(codec.decode_access(token).email == "ada@example.com" for token in tokens)


# --- refresh tokens: MACed with a key derived from the ring key ------------------


def test_a_refresh_token_is_maced_under_the_current_kid(
    codec: JwtTokenCodec, ed_key: StoredSigningKey
) -> None:
    token = codec.encode_refresh(_refresh())
    assert _unb64(token.split(".")[0]) == {"alg": "HS256", "kid": ed_key.kid, "typ": "JWT"}
    assert codec.decode_refresh(token).token_id == "jti-refresh"
    # Not verifiable with what the JWKS publishes, and never an access token.
    public = codec.keyring.public_key(ed_key.kid)
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE)  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenError, match="algorithm"):
        codec.decode_access(token)


def test_a_refresh_token_signed_before_the_mac_still_verifies(
    codec: JwtTokenCodec, ed_key: StoredSigningKey
) -> None:
    # Refresh tokens issued by an older release were EdDSA-signed like access tokens.
    payload = _claims_of(codec.encode_refresh(_refresh()))
    key = codec.keyring.current
    legacy = jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    assert codec.decode_refresh(legacy).token_id == "jti-refresh"


def test_a_refresh_token_of_the_previous_key_verifies_after_a_rotation() -> None:
    old = _stored("EdDSA", age=timedelta(days=1))
    token = _codec(old).encode_refresh(_refresh())
    rotated = _codec(old, _stored("EdDSA"))
    assert rotated.keyring.current.kid != old.kid
    assert rotated.decode_refresh(token).token_id == "jti-refresh"
    assert _unb64(rotated.encode_refresh(_refresh()).split(".")[0])["kid"] == (
        rotated.keyring.current.kid
    )
    # Once the old key leaves the ring, so do its refresh tokens.
    with pytest.raises(InvalidTokenError, match="unknown"):
        _codec(_stored("EdDSA")).decode_refresh(token)


def test_forged_refresh_macs_are_rejected(codec: JwtTokenCodec, ed_key: StoredSigningKey) -> None:
    payload = _claims_of(codec.encode_refresh(_refresh()))
    public_raw = codec.keyring.public_key(ed_key.kid).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    forgeries = {
        "keyed with the public key": jwt.encode(
            payload, public_raw, algorithm="HS256", headers={"kid": ed_key.kid}
        ),
        "HS512": jwt.encode(payload, b"k" * 64, algorithm="HS512", headers={"kid": ed_key.kid}),
    }
    other = _codec(_stored("EdDSA"))
    forged_kid = other.encode_refresh(_refresh()).split(".")
    header = _unb64(forged_kid[0]) | {"kid": ed_key.kid}
    forgeries["another ring's MAC"] = (
        f"{_b64(json.dumps(header).encode())}.{forged_kid[1]}.{forged_kid[2]}"
    )
    for token in forgeries.values():
        with pytest.raises(InvalidTokenError):
            codec.decode_refresh(token)
