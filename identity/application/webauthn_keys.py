"""What the service derives with its secret key for WebAuthn: challenges and decoys.

- A flow id is random and handed to the client; the store keeps only its
  SHA-256 (``flow_key``), and the flow's challenge is an HMAC of the id
  (``challenge``): neither the id nor the challenge is ever stored, so a read
  of the database alone cannot finish a ceremony.
- Email-first sign-in answers an address without an account (or without
  passkeys) with decoy credential descriptors derived from the address: the
  same ones on every call. A decoy id is 16 derived bytes followed by a
  16-byte MAC of them, so the service recognises its own decoys when one comes
  back (400 like a failed assertion, never the 404 of an unknown credential).
"""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID

from identity.application.ports import CredentialDescriptor

CHALLENGE_BYTES = 32
_DECOY_BODY = 16
_DECOY_MAC = 16
# Transports real passkeys report, as platform and roaming authenticators send them.
_DECOY_TRANSPORTS: tuple[tuple[str, ...], ...] = (
    ("hybrid", "internal"),
    ("internal",),
    ("hybrid", "internal"),
    ("nfc", "usb"),
)


class WebAuthnKeys:
    def __init__(self, secret_key: str) -> None:
        master = secret_key.encode()
        self._challenge_key = hmac.new(master, b"identity/webauthn/challenge/v1", "sha256").digest()
        self._decoy_key = hmac.new(master, b"identity/webauthn/decoy/v1", "sha256").digest()
        self._decoy_mac_key = hmac.new(master, b"identity/webauthn/decoy-mac/v1", "sha256").digest()

    @staticmethod
    def flow_key(flow_id: str) -> str:
        """What is stored for a flow id: its SHA-256 (it is random, so no key is needed)."""
        return hashlib.sha256(flow_id.encode("utf-8")).hexdigest()

    def challenge(self, flow_id: str) -> bytes:
        return hmac.new(self._challenge_key, flow_id.encode("utf-8"), "sha256").digest()

    def decoys(self, tenant_id: UUID, email_key: str) -> list[CredentialDescriptor]:
        """One to three descriptors, stable for (tenant, address)."""
        seed = f"{tenant_id}|{email_key}".encode()
        count = 1 + self._derive(seed + b"|count")[0] % 3
        decoys = []
        for index in range(count):
            derived = self._derive(seed + f"|{index}".encode())
            body = derived[:_DECOY_BODY]
            transports = _DECOY_TRANSPORTS[derived[-1] % len(_DECOY_TRANSPORTS)]
            decoys.append(CredentialDescriptor(body + self._mac(tenant_id, body), transports))
        return decoys

    def is_decoy(self, tenant_id: UUID, credential_id: bytes) -> bool:
        if len(credential_id) != _DECOY_BODY + _DECOY_MAC:
            return False
        body, mac = credential_id[:_DECOY_BODY], credential_id[_DECOY_BODY:]
        return hmac.compare_digest(mac, self._mac(tenant_id, body))

    def _derive(self, message: bytes) -> bytes:
        return hmac.new(self._decoy_key, message, "sha256").digest()

    def _mac(self, tenant_id: UUID, body: bytes) -> bytes:
        return hmac.new(self._decoy_mac_key, tenant_id.bytes + body, "sha256").digest()[:_DECOY_MAC]
