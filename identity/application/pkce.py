"""Secrets for the OpenID Connect code flow: state, nonce and the PKCE pair (RFC 7636).

Stdlib only, so use cases can make them without touching the adapter.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

# 32 random bytes give 256 bits of entropy; urlsafe base64 keeps them URL-safe.
_TOKEN_BYTES = 32


def new_state() -> str:
    """An unguessable value that binds the callback to the browser that started the flow."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def new_nonce() -> str:
    """An unguessable value the provider must echo in the ID token (replay protection)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def new_code_verifier() -> str:
    """A PKCE code verifier: 43 characters from the unreserved set (RFC 7636 section 4.1)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def s256_challenge(code_verifier: str) -> str:
    """The S256 code challenge: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
