"""Authenticated encryption at rest for small records (Fernet, key from HKDF)."""

from __future__ import annotations

import base64

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
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=f"identity/{purpose}/v1".encode(),
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def unseal(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise UnsealError("cannot unseal: wrong secret key or altered data") from None
