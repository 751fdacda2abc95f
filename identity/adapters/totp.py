"""RFC 6238 TOTP with pyotp: SHA-1, 6 digits, 30-second steps."""

from __future__ import annotations

from datetime import datetime

import pyotp

from identity.application.ports import TotpEngine

DIGITS = 6
PERIOD_SECONDS = 30
# One step of drift each way: a phone clock 30 s off, or a code typed as it turned.
DRIFT_STEPS = 1


class PyotpTotpEngine(TotpEngine):
    def new_secret(self) -> str:
        return pyotp.random_base32(32)  # 32 base32 characters: 160 bits, as RFC 4226 advises

    def provisioning_uri(self, secret: str, *, account_name: str, issuer: str) -> str:
        return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS).provisioning_uri(
            name=account_name, issuer_name=issuer
        )

    def matching_step(self, secret: str, code: str, now: datetime) -> int | None:
        if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS)
        try:
            return totp.verify_and_get_timecode(code, for_time=now, valid_window=DRIFT_STEPS)
        except pyotp.exceptions.OTPVerificationError:
            return None
