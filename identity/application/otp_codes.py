"""One-time code generation and the keyed hash that is stored instead of the code."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID

from identity.domain.otp import OTP_LENGTH, OtpPurpose


def generate_code() -> str:
    return f"{secrets.randbelow(10**OTP_LENGTH):0{OTP_LENGTH}d}"


class CodeDigester:
    """HMAC-SHA256 keyed by the master secret, bound to tenant, email and purpose.

    A database leak alone reveals no live code, and a digest made for one
    purpose or address never matches another.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"identity/otp/v1", hashlib.sha256).digest()

    def digest(self, tenant_id: UUID, email_key: str, purpose: OtpPurpose, code: str) -> str:
        message = f"{tenant_id}|{email_key}|{purpose.value}|{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
