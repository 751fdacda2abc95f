"""PKCE helpers, checked against RFC 7636 and Authlib's implementation."""

from __future__ import annotations

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from identity.application.pkce import new_code_verifier, new_nonce, new_state, s256_challenge


def test_s256_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert s256_challenge(verifier) == create_s256_code_challenge(verifier)


def test_generated_secrets_are_fresh_and_pkce_sized() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}

    assert len(verifiers) == 50
    assert all(43 <= len(v) <= 128 for v in verifiers)
    assert new_state() != new_state()
    assert new_nonce() != new_nonce()
