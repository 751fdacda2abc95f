"""Authenticated encryption at rest for small records (Fernet, key from HKDF)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import attrs
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class UnsealError(Exception):
    """The record was sealed with another secret or has been altered."""


class Sealer:
    """Seals records with a key derived from the master secret for one ``purpose``.

    Each purpose gets its own key, so a record of one kind cannot be passed off
    as another.
    """

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, f"{purpose}/v1")))
        self._lookup_key = _derive(secret_key, f"{purpose}/lookup/v1")

    def lookup_digest(self, value: str) -> str:
        """A keyed digest (HMAC-SHA256) to find sealed records by ``value``: equal
        values give equal digests, and without the secret a digest tells nothing."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def unseal(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise UnsealError("cannot unseal: wrong secret key or altered data") from None


@attrs.frozen
class Sealers:
    """One sealer per kind of sealed record, each with its own key: the one bundle
    the composition root builds and the SQL unit of work takes."""

    outbox: Sealer
    oauth_state: Sealer
    code_request: Sealer
    webhook: Sealer
    totp: Sealer
    tenant_secret: Sealer

    @classmethod
    def derive(cls, secret_key: str) -> Sealers:
        """Every sealer's key derived from the master secret (the purposes are part
        of the stored data: never rename one)."""
        return cls(
            outbox=Sealer(secret_key, "outbox"),
            oauth_state=Sealer(secret_key, "oauth-state"),
            code_request=Sealer(secret_key, "code-request"),
            webhook=Sealer(secret_key, "webhook-secret"),
            totp=Sealer(secret_key, "totp-secret"),
            tenant_secret=Sealer(secret_key, "tenant-secret"),
        )


def _derive(secret_key: str, label: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"identity/{label}".encode()
    ).derive(secret_key.encode())
