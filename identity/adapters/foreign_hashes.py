"""Password hashes made by other systems, checked as they are until the first sign-in.

Every function here is synchronous and slow on purpose (it runs the foreign
algorithm): callers run it in the hasher's thread pool. A hash is first
*parsed* (cheap, no secret involved: used by the importer to refuse a record
whose hash can never be checked) and then *checked* against a password.

Formats, as stored in ``users.password_hash``:

- bcrypt: ``$2a$``, ``$2b$``, ``$2y$`` (any cost), as the source wrote it;
- argon2: PHC ``$argon2id$v=19$m=..,t=..,p=..$salt$hash`` and ``$argon2i$``;
- PBKDF2: PHC ``$pbkdf2-sha256$i=N[,l=N]$salt$hash`` (also passlib's
  ``$pbkdf2-sha256$N$salt$hash`` in its adapted base64), ``sha512`` alike, and
  Django's ``pbkdf2_sha256$N$salt$base64hash``;
- scrypt: PHC ``$scrypt$ln=..,r=..,p=..$salt$hash`` (``ln`` the log2 of N, or N
  itself when it is over 64, as Ory Kratos writes it) and Django's
  ``scrypt$salt$N$r$p$base64hash``;
- Firebase's modified scrypt: ``firebase-scrypt$rounds$mem_cost$salt_separator$
  signer_key$salt$hash`` (base64 fields), the project's parameters kept with
  each hash so no configuration outlives the import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Final

import attrs
import bcrypt
from argon2 import PasswordHasher as Argon2Hasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIREBASE_PREFIX: Final = "firebase-scrypt$"
MAX_HASH_LENGTH: Final = 1024
# Bounds that keep one sign-in from costing minutes or gigabytes.
MAX_PBKDF2_ITERATIONS: Final = 10_000_000
MAX_SCRYPT_MEMORY: Final = 256 * 1024 * 1024
MAX_ARGON2_MEMORY_KIB: Final = 1024 * 1024

_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_ARGON2 = re.compile(
    r"^\$argon2(id|i)\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
)
_PHC_PBKDF2 = re.compile(r"^\$pbkdf2-(sha256|sha512)\$([^$]+)\$([^$]*)\$([^$]+)$")
_DJANGO_PBKDF2 = re.compile(r"^pbkdf2_(sha256|sha512)\$(\d+)\$([^$]+)\$([A-Za-z0-9+/=]+)$")
_PHC_SCRYPT = re.compile(r"^\$scrypt\$([^$]+)\$([^$]*)\$([^$]+)$")
_DJANGO_SCRYPT = re.compile(r"^scrypt\$([^$]+)\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)$")

_argon2 = Argon2Hasher()


class UnsupportedHashError(ValueError):
    """A stored hash that no checker here can verify; the message says why."""


Checker = Callable[[bytes], bool]


def _b64(value: str) -> bytes:
    """Standard or URL-safe base64, padded or not; passlib's ``.`` for ``+`` too."""
    cleaned = value.replace(".", "+").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise UnsupportedHashError("a base64 field of the hash does not decode") from None


def _params(raw: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.isdigit() or len(value) > 12:
            raise UnsupportedHashError("the hash's parameters are malformed")
        out[name] = int(value)
    return out


def _scrypt_checker(salt: bytes, expected: bytes, n: int, r: int, p: int) -> Checker:
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise UnsupportedHashError("the scrypt parameters are out of range")
    memory = 128 * r * n * p + 128 * r * n
    if memory > MAX_SCRYPT_MEMORY:
        raise UnsupportedHashError("the scrypt parameters need too much memory")
    if not expected:
        raise UnsupportedHashError("the scrypt hash is empty")

    def check(password: bytes) -> bool:
        derived = hashlib.scrypt(
            password, salt=salt, n=n, r=r, p=p, maxmem=memory + 1024 * 1024, dklen=len(expected)
        )
        return hmac.compare_digest(derived, expected)

    return check


def _pbkdf2_checker(algorithm: str, salt: bytes, iterations: int, expected: bytes) -> Checker:
    if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
        raise UnsupportedHashError("the PBKDF2 iteration count is out of range")
    if not expected:
        raise UnsupportedHashError("the PBKDF2 hash is empty")

    def check(password: bytes) -> bool:
        derived = hashlib.pbkdf2_hmac(algorithm, password, salt, iterations, len(expected))
        return hmac.compare_digest(derived, expected)

    return check


@attrs.frozen
class FirebaseHashConfig:
    """A Firebase project's password hash parameters (console: Users > Password hash parameters)."""

    signer_key: bytes = attrs.field(repr=False)
    salt_separator: bytes
    rounds: int
    mem_cost: int

    @classmethod
    def from_mapping(cls, raw: object) -> FirebaseHashConfig:
        """From the console's ``hash_config`` block (snake_case or camelCase keys)."""
        if isinstance(raw, dict) and isinstance(raw.get("hash_config"), dict):
            raw = raw["hash_config"]
        if not isinstance(raw, dict):
            raise ValueError("the hash configuration must be a JSON object")

        def pick(*names: str) -> object:
            for name in names:
                if name in raw:
                    return raw[name]
            raise ValueError(f"the hash configuration lacks {names[0]!r}")

        algorithm = str(raw.get("algorithm", "SCRYPT")).upper()
        if algorithm != "SCRYPT":
            raise ValueError(f"unsupported Firebase hash algorithm {algorithm!r}")
        try:
            signer = _b64(str(pick("base64_signer_key", "signerKey", "key")))
            separator = _b64(str(pick("base64_salt_separator", "saltSeparator", "salt_separator")))
            rounds = int(str(pick("rounds")))
            mem_cost = int(str(pick("mem_cost", "memCost", "memoryCost")))
        except UnsupportedHashError as error:
            raise ValueError(str(error)) from None
        if not 1 <= rounds <= 64 or not 1 <= mem_cost <= 20 or not signer:
            raise ValueError("the Firebase hash parameters are out of range")
        return cls(signer, separator, rounds, mem_cost)

    def stored_hash(self, salt_b64: str, hash_b64: str) -> str:
        """The self-contained stored form of one exported Firebase hash."""
        parts = (
            str(self.rounds),
            str(self.mem_cost),
            base64.b64encode(self.salt_separator).decode("ascii"),
            base64.b64encode(self.signer_key).decode("ascii"),
            salt_b64,
            hash_b64,
        )
        return FIREBASE_PREFIX + "$".join(parts)


def firebase_scrypt(password: bytes, salt: bytes, config: FirebaseHashConfig) -> bytes:
    """Firebase's scrypt: the derived key encrypts the signer key (AES-256-CTR, zero IV)."""
    n = 1 << config.mem_cost
    derived = hashlib.scrypt(
        password,
        salt=salt + config.salt_separator,
        n=n,
        r=config.rounds,
        p=1,
        maxmem=128 * config.rounds * n * 2 + 1024 * 1024,
        dklen=64,
    )
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(b"\x00" * 16)).encryptor()
    return encryptor.update(config.signer_key) + encryptor.finalize()


def _firebase_checker(body: str) -> Checker:
    parts = body.split("$")
    if len(parts) != 6 or not parts[0].isdigit() or not parts[1].isdigit():
        raise UnsupportedHashError("the Firebase scrypt hash is malformed")
    rounds, mem_cost = int(parts[0]), int(parts[1])
    if not 1 <= rounds <= 64 or not 1 <= mem_cost <= 20:
        raise UnsupportedHashError("the Firebase scrypt parameters are out of range")
    if 128 * rounds * (1 << mem_cost) * 2 > MAX_SCRYPT_MEMORY:
        raise UnsupportedHashError("the Firebase scrypt parameters need too much memory")
    config = FirebaseHashConfig(_b64(parts[3]), _b64(parts[2]), rounds, mem_cost)
    salt, expected = _b64(parts[4]), _b64(parts[5])
    if not expected or not config.signer_key:
        raise UnsupportedHashError("the Firebase scrypt hash is empty")

    def check(password: bytes) -> bool:
        derived = firebase_scrypt(password, salt, config)
        return hmac.compare_digest(derived[: len(expected)], expected)

    return check


def _bcrypt_checker(hashed: str) -> Checker:
    match = _BCRYPT.match(hashed)
    if match is None:
        raise UnsupportedHashError("the bcrypt hash is malformed")
    if not 4 <= int(match.group(1)) <= 31:
        raise UnsupportedHashError("the bcrypt cost is out of range")
    # $2y$ (PHP) is $2b$ under another name.
    stored = ("$2b$" + hashed[4:]).encode("ascii")

    def check(password: bytes) -> bool:
        # bcrypt only ever read the first 72 bytes; bcrypt 5 refuses longer input.
        return bcrypt.checkpw(password[:72], stored)

    return check


def _argon2_checker(hashed: str) -> Checker:
    match = _ARGON2.match(hashed)
    if match is None:
        raise UnsupportedHashError("the argon2 hash is malformed")
    memory, time_cost = int(match.group(3)), int(match.group(4))
    if memory > MAX_ARGON2_MEMORY_KIB or time_cost > 100 or int(match.group(5)) > 64:
        raise UnsupportedHashError("the argon2 parameters are out of range")

    def check(password: bytes) -> bool:
        try:
            return _argon2.verify(hashed, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            return False

    return check


def _phc_pbkdf2_checker(match: re.Match[str]) -> Checker:
    algorithm, params, salt, digest = match.groups()
    if params.isdigit():  # passlib: the bare iteration count
        iterations = int(params)
    else:
        iterations = _params(params).get("i", 0)
    return _pbkdf2_checker(algorithm, _b64(salt), iterations, _b64(digest))


def _phc_scrypt_checker(match: re.Match[str]) -> Checker:
    values = _params(match.group(1))
    ln, r, p = values.get("ln", 0), values.get("r", 0), values.get("p", 0)
    n = ln if ln > 64 else (1 << ln if 1 <= ln <= 40 else 0)
    return _scrypt_checker(_b64(match.group(2)), _b64(match.group(3)), n, r, p)


def parse(hashed: str) -> Checker:
    """A checker for ``hashed``; raises ``UnsupportedHashError`` naming why it cannot be."""
    if not isinstance(hashed, str) or not hashed:
        raise UnsupportedHashError("the hash is empty")
    if len(hashed) > MAX_HASH_LENGTH:
        raise UnsupportedHashError("the hash is too long")
    if not hashed.isascii():
        raise UnsupportedHashError("the hash is not ASCII")
    if hashed.startswith("$2"):
        return _bcrypt_checker(hashed)
    if hashed.startswith("$argon2"):
        if hashed.startswith("$argon2d$"):
            raise UnsupportedHashError("argon2d is not a password hash; only argon2id and argon2i")
        return _argon2_checker(hashed)
    if match := _PHC_PBKDF2.match(hashed):
        return _phc_pbkdf2_checker(match)
    if match := _DJANGO_PBKDF2.match(hashed):
        algorithm, iterations, salt, digest = match.groups()
        return _pbkdf2_checker(algorithm, salt.encode("ascii"), int(iterations), _b64(digest))
    if match := _PHC_SCRYPT.match(hashed):
        return _phc_scrypt_checker(match)
    if match := _DJANGO_SCRYPT.match(hashed):
        salt, n, r, p, digest = match.groups()
        return _scrypt_checker(salt.encode("ascii"), _b64(digest), int(n), int(r), int(p))
    if hashed.startswith(FIREBASE_PREFIX):
        return _firebase_checker(hashed[len(FIREBASE_PREFIX) :])
    raise UnsupportedHashError("the hash is in no supported format")


def refusal(hashed: str) -> str | None:
    """None when ``hashed`` can be checked; otherwise why not (cheap: no hashing)."""
    # The common case of a big import, without making a checker: a well-formed bcrypt
    # hash (the pattern is ASCII and bounds the length).
    if (match := _BCRYPT.match(hashed)) is not None and 4 <= int(match.group(1)) <= 31:
        return None
    try:
        parse(hashed)
    except UnsupportedHashError as error:
        return str(error)
    return None


def check(password: str, hashed: str) -> bool:
    """True when ``password`` matches the foreign ``hashed``; False for a mismatch or a bad hash."""
    try:
        checker = parse(hashed)
        return checker(password.encode("utf-8", "surrogatepass"))
    except (UnsupportedHashError, ValueError, MemoryError):
        return False
