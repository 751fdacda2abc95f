from datetime import UTC, datetime, timedelta

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from identity.adapters.signing_keys import (
    KeyEncryptor,
    KeyRing,
    SigningKeyError,
    UnknownKeyError,
    generate_signing_key,
    jwk_thumbprint,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def encryptor() -> KeyEncryptor:
    return KeyEncryptor("test-master-secret")


def test_encryptor_round_trip_and_ciphertext_hides_plaintext(encryptor: KeyEncryptor) -> None:
    secret = b"-----BEGIN PRIVATE KEY-----"
    token = encryptor.encrypt(secret)
    assert secret not in token
    assert encryptor.decrypt(token) == secret


def test_encryptor_refuses_wrong_secret(encryptor: KeyEncryptor) -> None:
    token = encryptor.encrypt(b"material")
    with pytest.raises(SigningKeyError, match="IDENTITY_SECRET_KEY"):
        KeyEncryptor("another-secret").decrypt(token)


def test_encryptor_does_not_show_secret_in_repr() -> None:
    assert "hunter2" not in repr(KeyEncryptor("hunter2"))


@pytest.mark.parametrize(("algorithm", "kty"), [("EdDSA", "OKP"), ("RS256", "RSA")])
def test_generated_key_loads_into_ring(encryptor: KeyEncryptor, algorithm: str, kty: str) -> None:
    stored = generate_signing_key(algorithm, encryptor, NOW)
    ring = KeyRing.load([stored], encryptor)

    assert stored.algorithm == algorithm
    assert ring.current.kid == stored.kid
    assert ring.current.algorithm == algorithm
    assert stored.kid == jwk_thumbprint(ring.public_key(stored.kid))
    assert stored.public_jwk["kty"] == kty
    assert b"PRIVATE KEY" not in stored.private_key_encrypted


def test_rsa_keys_are_2048_bits(encryptor: KeyEncryptor) -> None:
    ring = KeyRing.load([generate_signing_key("RS256", encryptor, NOW)], encryptor)
    key = ring.current.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048


def test_unknown_algorithm_is_refused(encryptor: KeyEncryptor) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        generate_signing_key("HS256", encryptor, NOW)


def test_newest_key_signs_and_all_verify(encryptor: KeyEncryptor) -> None:
    old = generate_signing_key("EdDSA", encryptor, NOW)
    new = generate_signing_key("EdDSA", encryptor, NOW + timedelta(days=1))
    ring = KeyRing.load([new, old], encryptor)
    assert ring.current.kid == new.kid
    ring_reversed = KeyRing.load([old, new], encryptor)
    assert ring_reversed.current.kid == new.kid
    assert isinstance(ring.public_key(old.kid), ed25519.Ed25519PublicKey)


def test_unknown_kid_raises(encryptor: KeyEncryptor) -> None:
    ring = KeyRing.load([generate_signing_key("EdDSA", encryptor, NOW)], encryptor)
    with pytest.raises(UnknownKeyError):
        ring.public_key("nope")


def test_loading_with_wrong_secret_fails(encryptor: KeyEncryptor) -> None:
    stored = generate_signing_key("EdDSA", encryptor, NOW)
    with pytest.raises(SigningKeyError):
        KeyRing.load([stored], KeyEncryptor("wrong"))


def test_empty_ring_is_refused(encryptor: KeyEncryptor) -> None:
    with pytest.raises(SigningKeyError, match="keys rotate"):
        KeyRing.load([], encryptor)


def test_jwks_has_public_parts_only(encryptor: KeyEncryptor) -> None:
    ed = generate_signing_key("EdDSA", encryptor, NOW)
    rs = generate_signing_key("RS256", encryptor, NOW + timedelta(seconds=1))
    jwks = KeyRing.load([ed, rs], encryptor).jwks()

    assert [k["kid"] for k in jwks["keys"]] == [rs.kid, ed.kid]
    for jwk in jwks["keys"]:
        assert jwk["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    assert by_kid[ed.kid]["alg"] == "EdDSA"
    assert by_kid[ed.kid]["crv"] == "Ed25519"
    assert by_kid[rs.kid]["alg"] == "RS256"
    assert by_kid[rs.kid]["e"] == "AQAB"


def test_stored_key_with_mismatched_algorithm_is_refused(encryptor: KeyEncryptor) -> None:
    stored = generate_signing_key("EdDSA", encryptor, NOW)
    lying = attrs.evolve(stored, algorithm="RS256")
    with pytest.raises(SigningKeyError, match="not an RS256 key"):
        KeyRing.load([lying], encryptor)
