"""Imported password hashes: each format checks its known password; a bad hash is refused."""

from __future__ import annotations

import base64
import hashlib

import bcrypt
import pytest
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type

from identity.adapters import foreign_hashes
from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor
from identity.adapters.foreign_hashes import FirebaseHashConfig

PASSWORD = "correct horse battery"

# Firebase's published example (github.com/firebase/scrypt README): password
# "user1password" with these project parameters and this user salt.
FIREBASE_CONFIG = {
    "algorithm": "SCRYPT",
    "base64_signer_key": (
        "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
    ),
    "base64_salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
FIREBASE_SALT = "42xEC+ixf3L2lw=="
FIREBASE_HASH = (
    "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _bcrypt(prefix: str) -> str:
    made = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return prefix + made[4:]


def _argon2(kind: Type) -> str:
    return Argon2Hasher(time_cost=1, memory_cost=64, parallelism=1, type=kind).hash(PASSWORD)


def _pbkdf2_phc(algorithm: str) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac(algorithm, PASSWORD.encode(), salt, 1000, 32)
    return f"$pbkdf2-{algorithm}$i=1000,l=32${_b64(salt)}${_b64(digest)}"


def _ab64(raw: bytes) -> str:
    return _b64(raw).replace("+", ".")


def _pbkdf2_passlib() -> str:
    salt = b"saltsaltsalt"
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 1200)
    return f"$pbkdf2-sha256$1200${_ab64(salt)}${_ab64(digest)}"


def _django_pbkdf2() -> str:
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"seasalt", 1000)
    return f"pbkdf2_sha256$1000$seasalt${base64.b64encode(digest).decode()}"


def _scrypt_phc(ln_as_n: bool) -> str:
    salt = b"some-salt"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=1024, r=8, p=1, dklen=32)
    ln = "1024" if ln_as_n else "10"
    return f"$scrypt$ln={ln},r=8,p=1${_b64(salt)}${_b64(digest)}"


def _django_scrypt() -> str:
    digest = hashlib.scrypt(PASSWORD.encode(), salt=b"pepper", n=1024, r=8, p=1, dklen=64)
    return f"scrypt$pepper$1024$8$1${base64.b64encode(digest).decode()}"


KNOWN = {
    "bcrypt $2a$": lambda: _bcrypt("$2a$"),
    "bcrypt $2b$": lambda: _bcrypt("$2b$"),
    "bcrypt $2y$": lambda: _bcrypt("$2y$"),
    "argon2id": lambda: _argon2(Type.ID),
    "argon2i": lambda: _argon2(Type.I),
    "pbkdf2-sha256 PHC": lambda: _pbkdf2_phc("sha256"),
    "pbkdf2-sha512 PHC": lambda: _pbkdf2_phc("sha512"),
    "pbkdf2-sha256 passlib": _pbkdf2_passlib,
    "pbkdf2_sha256 Django": _django_pbkdf2,
    "scrypt PHC": lambda: _scrypt_phc(False),
    "scrypt Kratos": lambda: _scrypt_phc(True),
    "scrypt Django": _django_scrypt,
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_each_format_checks_its_known_password(name: str) -> None:
    hashed = KNOWN[name]()
    assert foreign_hashes.refusal(hashed) is None
    assert foreign_hashes.check(PASSWORD, hashed)
    assert not foreign_hashes.check(PASSWORD + "!", hashed)


def test_firebase_scrypt_matches_the_published_test_vector() -> None:
    config = FirebaseHashConfig.from_mapping(FIREBASE_CONFIG)
    assert foreign_hashes.firebase_scrypt(
        b"user1password", base64.b64decode(FIREBASE_SALT), config
    ) == base64.b64decode(FIREBASE_HASH)
    stored = config.stored_hash(FIREBASE_SALT, FIREBASE_HASH)
    assert foreign_hashes.refusal(stored) is None
    assert foreign_hashes.check("user1password", stored)
    assert not foreign_hashes.check("user2password", stored)


def test_firebase_config_is_read_from_the_console_block() -> None:
    camel = {
        "hash_config": {
            "algorithm": "SCRYPT",
            "signerKey": FIREBASE_CONFIG["base64_signer_key"],
            "saltSeparator": "Bw==",
            "rounds": 8,
            "memCost": 14,
        }
    }
    assert FirebaseHashConfig.from_mapping(camel) == FirebaseHashConfig.from_mapping(
        FIREBASE_CONFIG
    )
    with pytest.raises(ValueError):
        FirebaseHashConfig.from_mapping({"algorithm": "HMAC_SHA256"})
    with pytest.raises(ValueError):
        FirebaseHashConfig.from_mapping({"base64_signer_key": "!!!", "rounds": 8})


MALFORMED = [
    "",
    "plaintext-password",
    "$2b$12$short",
    "$2b$99$" + "a" * 53,
    "$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
    "$pbkdf2-sha256$i=99999999999,l=32$c2FsdA$aGFzaA",
    "$pbkdf2-sha256$i=abc$c2FsdA$aGFzaA",
    "$pbkdf2-md5$i=1000$c2FsdA$aGFzaA",
    "pbkdf2_sha256$1000$salt$not base64!",
    "$scrypt$ln=30,r=8,p=1$c2FsdA$aGFzaA",
    "$scrypt$ln=1000,r=8,p=1$c2FsdA$aGFzaA",
    "firebase-scrypt$8$14$Bw==$$c2FsdA==$",
    "firebase-scrypt$8$14",
    "md5$abc$def",
    "$2b$04$" + "é" * 53,
    "$argon2id$" + "x" * 5000,
]


@pytest.mark.parametrize("hashed", MALFORMED)
def test_a_malformed_hash_is_refused_with_a_reason_and_never_raises(hashed: str) -> None:
    reason = foreign_hashes.refusal(hashed)
    assert isinstance(reason, str) and reason
    assert foreign_hashes.check(PASSWORD, hashed) is False


async def test_the_service_hasher_verifies_an_imported_hash_and_wants_it_replaced() -> None:
    hasher = BcryptSha256Hasher(rounds=4, executor=make_hasher_executor(1))
    imported = _django_pbkdf2()
    assert hasher.refusal(imported) is None
    assert await hasher.verify(PASSWORD, imported)
    assert not await hasher.verify("wrong password", imported)
    assert hasher.needs_rehash(imported)
    own = await hasher.hash(PASSWORD)
    assert hasher.refusal(own) is None
    assert not hasher.needs_rehash(own)
    assert hasher.refusal("md5$x$y") is not None
