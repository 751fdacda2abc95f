"""A software WebAuthn authenticator for the tests: it makes what a browser posts back.

Keys come from ``cryptography`` (ES256 on P-256, EdDSA on Ed25519); the
authenticator data, COSE keys and attestation objects are built here with
``cbor2``, never by the service. Every knob a test needs to break a ceremony
(origin, RP ID, flags, counter, challenge, type) is a keyword.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import attrs
import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes.fromhex("adce000235bcc60a648b0b25f1f05503")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.define
class Credential:
    """One credential held by the authenticator."""

    credential_id: bytes
    algorithm: str  # "ES256" | "EdDSA"
    key: Any
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    backup_eligible: bool = True

    def cose_key(self) -> bytes:
        if self.algorithm == "ES256":
            numbers = self.key.public_key().public_numbers()
            return cbor2.dumps(
                {
                    1: 2,
                    3: -7,
                    -1: 1,
                    -2: numbers.x.to_bytes(32, "big"),
                    -3: numbers.y.to_bytes(32, "big"),
                }
            )
        raw = self.key.public_key().public_bytes_raw()
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == "ES256":
            return bytes(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return bytes(self.key.sign(data))


def _client_data(kind: str, challenge: str, origin: str, cross_origin: bool | None) -> bytes:
    data: dict[str, Any] = {"type": kind, "challenge": challenge, "origin": origin}
    if cross_origin is not None:
        data["crossOrigin"] = cross_origin
    return json.dumps(data).encode()


def _flags(up: bool, uv: bool, be: bool, bs: bool, at: bool) -> int:
    return (
        (UP if up else 0)
        | (UV if uv else 0)
        | (BE if be else 0)
        | (BS if bs else 0)
        | (AT if at else 0)
    )


@attrs.define
class SoftwareAuthenticator:
    """Holds credentials; ``create`` and ``get`` answer options like a browser would."""

    origin: str = "https://id.example.test"
    algorithm: str = "ES256"
    credentials: list[Credential] = attrs.field(factory=list)

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        up: bool = True,
        uv: bool = True,
        backup_eligible: bool = True,
        backed_up: bool = True,
        kind: str = "webauthn.create",
        challenge: str | None = None,
        algorithm: str | None = None,
        credential_id: bytes | None = None,
        cross_origin: bool | None = False,
        sign_count: int = 0,
    ) -> dict[str, Any]:
        """A ``PublicKeyCredential.toJSON()`` of ``navigator.credentials.create()``."""
        algorithm = algorithm or self.algorithm
        key = (
            ec.generate_private_key(ec.SECP256R1())
            if algorithm == "ES256"
            else ed25519.Ed25519PrivateKey.generate()
        )
        rp = rp_id or options["rp"]["id"]
        credential = Credential(
            credential_id=credential_id or os.urandom(32),
            algorithm=algorithm,
            key=key,
            rp_id=rp,
            user_handle=unb64url(options["user"]["id"]),
            sign_count=sign_count,
            backup_eligible=backup_eligible,
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([_flags(up, uv, backup_eligible, backed_up, True)])
            + struct.pack(">I", sign_count)
            + AAGUID
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = _client_data(
            kind, challenge or options["challenge"], origin or self.origin, cross_origin
        )
        self.credentials.append(credential)
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        credential: Credential | None = None,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        up: bool = True,
        uv: bool = True,
        backed_up: bool = True,
        kind: str = "webauthn.get",
        challenge: str | None = None,
        sign_count: int | None = None,
        user_handle: bytes | bool | None = True,
        cross_origin: bool | None = False,
    ) -> dict[str, Any]:
        """A ``PublicKeyCredential.toJSON()`` of ``navigator.credentials.get()``.

        Uses ``credential`` or the newest one; the counter grows by one unless
        ``sign_count`` says otherwise. ``user_handle=True`` sends the credential's.
        """
        credential = credential or self.credentials[-1]
        if sign_count is None:
            credential.sign_count += 1
            sign_count = credential.sign_count
        rp = rp_id or options.get("rpId") or credential.rp_id
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes(
                [
                    _flags(
                        up,
                        uv,
                        credential.backup_eligible,
                        backed_up and credential.backup_eligible,
                        False,
                    )
                ]
            )
            + struct.pack(">I", sign_count)
        )
        client_data = _client_data(
            kind, challenge or options["challenge"], origin or self.origin, cross_origin
        )
        signature = credential.sign(auth_data + hashlib.sha256(client_data).digest())
        handle = credential.user_handle if user_handle is True else user_handle
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if handle:
            response["userHandle"] = b64url(handle)
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
