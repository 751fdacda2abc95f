"""Asymmetric signing keys: generation, encryption at rest, the loaded key ring.

Private keys are stored as PKCS8 PEM encrypted with Fernet under a key derived
from the master secret, so a database dump alone does not let anyone mint
tokens. The public halves are stored as JWKs and published at
``/.well-known/jwks.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal, Protocol, TypeAlias

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from identity.adapters.sealing import Sealer, UnsealError

Algorithm: TypeAlias = Literal["EdDSA", "RS256"]
ALGORITHMS: Final[frozenset[str]] = frozenset({"EdDSA", "RS256"})

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# OpenID Connect requires RS256 for ID tokens: the ring always holds an RS256 key
# beside the key of the configured algorithm (EdDSA by default).
ID_TOKEN_ALGORITHM: Final = "RS256"


def ring_algorithms(primary: str) -> tuple[str, ...]:
    """The algorithms the ring keeps a key of: the configured one first, then RS256."""
    return tuple(dict.fromkeys((primary, ID_TOKEN_ALGORITHM)))


# A fixed label binds the derived key to this one use: the same master secret
# also keys OTP hashes and OAuth state, and those must never share a key.
_RSA_BITS: Final = 2048


class SigningKeyError(Exception):
    """A stored signing key cannot be used (wrong secret, corrupt or mismatched)."""


class UnknownKeyError(KeyError):
    """No key with this ``kid`` is in the ring."""


class KeyEncryptor:
    """Encrypts private key material at rest with a key derived from the master secret."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the master secret must not be empty")
        self._sealer = Sealer(secret_key, "signing-keys")

    def __repr__(self) -> str:
        return "KeyEncryptor(<redacted>)"

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._sealer.seal(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt; raise ``SigningKeyError`` when the secret is wrong or data is corrupt."""
        try:
            return self._sealer.unseal(ciphertext)
        except UnsealError:
            raise SigningKeyError(
                "cannot decrypt a stored signing key: IDENTITY_SECRET_KEY differs from "
                "the one the key was stored with, or the stored key is corrupt"
            ) from None


@attrs.frozen
class StoredSigningKey:
    """A signing key exactly as the database stores it."""

    kid: str
    algorithm: str = attrs.field(validator=attrs.validators.in_(ALGORITHMS))
    private_key_encrypted: bytes = attrs.field(repr=False)
    public_jwk: dict[str, str]
    created_at: datetime


@attrs.frozen
class SigningKey:
    """A decrypted key of the ring, ready to sign and verify."""

    kid: str
    algorithm: Algorithm
    private_key: PrivateKey = attrs.field(repr=False)
    public_key: PublicKey
    public_jwk: dict[str, str]
    created_at: datetime


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _public_members(public_key: PublicKey) -> dict[str, str]:
    """The RFC 7638 required members of the public JWK, and nothing private."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    numbers = public_key.public_numbers()
    return {"e": _b64url(_int_bytes(numbers.e)), "kty": "RSA", "n": _b64url(_int_bytes(numbers.n))}


def jwk_thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint: a stable kid derived from the public key itself."""
    members = _public_members(public_key)
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# The test suite replaces this with a pool of keys made once (tests/conftest.py):
# an RSA key costs ~100 ms to make, and most tests start a fresh key ring.
def _new_private_key(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)


def _check_algorithm(algorithm: str) -> Algorithm:
    if algorithm == "EdDSA":
        return "EdDSA"
    if algorithm == "RS256":
        return "RS256"
    raise ValueError(f"unsupported signing algorithm {algorithm!r}; use EdDSA or RS256")


def generate_signing_key(
    algorithm: str, encryptor: KeyEncryptor, now: datetime
) -> StoredSigningKey:
    """Make a new key pair (Ed25519 or RSA 2048) ready to store; kid is its thumbprint."""
    alg = _check_algorithm(algorithm)
    private_key = _new_private_key(alg)
    public_key = private_key.public_key()
    kid = jwk_thumbprint(public_key)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = {**_public_members(public_key), "kid": kid, "alg": alg, "use": "sig"}
    return StoredSigningKey(
        kid=kid,
        algorithm=alg,
        private_key_encrypted=encryptor.encrypt(pem),
        public_jwk=jwk,
        created_at=now,
    )


def _load(stored: StoredSigningKey, encryptor: KeyEncryptor) -> SigningKey:
    alg = _check_algorithm(stored.algorithm)
    pem = encryptor.decrypt(stored.private_key_encrypted)
    # The PEM was sealed (authenticated) with the master secret by ``generate_signing_key``:
    # OpenSSL made the key, so its costly RSA consistency check (~30 ms a key, at each
    # start and reload) proves nothing here.
    loaded = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    private_key: PrivateKey
    if alg == "EdDSA" and isinstance(loaded, ed25519.Ed25519PrivateKey):
        private_key = loaded
    elif alg == "RS256" and isinstance(loaded, rsa.RSAPrivateKey):
        private_key = loaded
    else:
        raise SigningKeyError(f"stored key {stored.kid!r} is not an {alg} key")
    public_key = private_key.public_key()
    # The published JWK is rebuilt from the private key, so a tampered row
    # cannot publish a public key that differs from the one that signs.
    jwk = {**_public_members(public_key), "kid": stored.kid, "alg": alg, "use": "sig"}
    return SigningKey(
        kid=stored.kid,
        algorithm=alg,
        private_key=private_key,
        public_key=public_key,
        public_jwk=jwk,
        created_at=stored.created_at,
    )


class KeyStore(Protocol):
    """Where the signing keys live: the database (``sqlalchemy.keys``) or memory."""

    async def stored(self) -> list[StoredSigningKey]:
        """Every stored key, encrypted as stored."""
        ...

    async def add_new(self, now: datetime, algorithm: str | None = None) -> StoredSigningKey:
        """Generate a key (of the configured algorithm unless named) and store it; it
        signs from the next load of the ring."""
        ...

    async def load_ring(self, now: datetime) -> KeyRing:
        """The key ring, creating the first key of each ring algorithm when there is
        none yet (only one each, even when several callers start together)."""
        ...


class KeyRing:
    """The decrypted signing keys: the newest of the primary algorithm signs access
    tokens, the newest of each algorithm signs ID tokens of it, all of them verify."""

    def __init__(self, keys: Sequence[SigningKey], primary: str | None = None) -> None:
        if not keys:
            raise SigningKeyError("no signing keys; run `identity keys rotate`")
        self._keys = sorted(keys, key=lambda k: k.created_at, reverse=True)
        self._by_kid = {k.kid: k for k in self._keys}
        if len(self._by_kid) != len(self._keys):
            raise SigningKeyError("two signing keys share one kid")
        self._newest: dict[str, SigningKey] = {}
        for key in self._keys:
            self._newest.setdefault(key.algorithm, key)
        self._current = self._newest.get(primary or "", self._keys[0])

    @classmethod
    def load(
        cls,
        stored: Sequence[StoredSigningKey],
        encryptor: KeyEncryptor,
        primary: str | None = None,
    ) -> KeyRing:
        """Decrypt every stored key; raise ``SigningKeyError`` on a wrong secret."""
        return cls([_load(s, encryptor) for s in stored], primary)

    @property
    def current(self) -> SigningKey:
        """The key that signs access tokens: the newest of the primary algorithm."""
        return self._current

    def current_for(self, algorithm: str) -> SigningKey:
        """The newest key of ``algorithm``; raise ``UnknownKeyError`` when there is none."""
        try:
            return self._newest[algorithm]
        except KeyError:
            raise UnknownKeyError(algorithm) from None

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms the ring signs with."""
        return tuple(sorted(self._newest))

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """All keys, newest first."""
        return tuple(self._keys)

    def key(self, kid: str) -> SigningKey:
        """The key with this ``kid``; raise ``UnknownKeyError``."""
        try:
            return self._by_kid[kid]
        except KeyError:
            raise UnknownKeyError(kid) from None

    def public_key(self, kid: str) -> PublicKey:
        """The public key with this ``kid``; raise ``UnknownKeyError``."""
        return self.key(kid).public_key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK set, newest first, with ``kid``, ``alg`` and ``use`` on each."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}
