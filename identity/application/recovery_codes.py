"""Recovery codes: how they look, how they are read back, and the digest that is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID

# Lower-case letters and digits without the look-alikes 0/o, 1/l/i.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_GROUPS = 3
RECOVERY_GROUP_LENGTH = 4  # 12 characters of 31: about 59 bits each


def new_recovery_code() -> str:
    """``xxxx-xxxx-xxxx`` from a CSPRNG, easy to read out and type."""
    groups = (
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUP_LENGTH))
        for _ in range(RECOVERY_GROUPS)
    )
    return "-".join(groups)


def normalise_recovery_code(raw: str) -> str | None:
    """The code's 12 characters (case, spaces and hyphens ignored), or None if it is not one."""
    compact = "".join(raw.split()).replace("-", "").lower()
    if len(compact) != RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH:
        return None
    if any(character not in RECOVERY_ALPHABET for character in compact):
        return None
    return compact


class RecoveryCodeDigester:
    """HMAC-SHA256 keyed by the master secret, bound to the tenant and the account.

    The codes carry about 59 bits each, so a keyed fast hash is enough: a
    database leak alone cannot be brute-forced without the key.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"identity/recovery/v1", hashlib.sha256).digest()

    def digest(self, tenant_id: UUID, user_id: UUID, normalised_code: str) -> str:
        message = f"{tenant_id}|{user_id}|{normalised_code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
