"""The pyotp TOTP adapter: RFC 6238 steps, one step of drift, codes of the wrong form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp

from identity.adapters.totp import PyotpTotpEngine

# RFC 6238 appendix B: T = 59 s is step 1; its SHA-1 8-digit code 94287082 ends in 287082.
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
RFC_TIME = datetime.fromtimestamp(59, tz=UTC)


def test_the_rfc_6238_vector() -> None:
    assert PyotpTotpEngine().matching_step(RFC_SECRET, "287082", RFC_TIME) == 1


def test_one_step_of_drift_each_way_and_the_step_it_matched() -> None:
    engine = PyotpTotpEngine()
    secret = engine.new_secret()
    now = datetime(2030, 1, 1, 12, 0, 15, tzinfo=UTC)
    step = int(now.timestamp()) // 30
    totp = pyotp.TOTP(secret)
    for offset in (-1, 0, 1):
        code = totp.at(now, counter_offset=offset)
        assert engine.matching_step(secret, code, now) == step + offset
    for offset in (-2, 2):
        assert engine.matching_step(secret, totp.at(now, counter_offset=offset), now) is None
    assert engine.matching_step(secret, totp.at(now), now + timedelta(seconds=60)) is None


def test_codes_of_the_wrong_form_match_nothing() -> None:
    engine = PyotpTotpEngine()
    secret = engine.new_secret()
    now = datetime(2030, 1, 1, tzinfo=UTC)
    fullwidth = "".join(chr(0xFF10 + digit) for digit in (1, 2, 3, 4, 5, 6))
    for code in ("", "12345", "1234567", "12345a", fullwidth, " 123456"):
        assert engine.matching_step(secret, code, now) is None


def test_secrets_are_fresh_and_the_uri_names_the_account() -> None:
    engine = PyotpTotpEngine()
    secret = engine.new_secret()
    assert len(secret) == 32 and secret != engine.new_secret()
    uri = urlsplit(engine.provisioning_uri(secret, account_name="ada@example.com", issuer="Acme"))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert "ada%40example.com" in uri.path or "ada@example.com" in uri.path
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Acme"]
