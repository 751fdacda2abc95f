"""Google sign-in: the OpenID Connect adapter with Google's settings."""

from __future__ import annotations

from typing import Any

from identity.adapters.oidc.provider import OidcIdentityProvider


def accepted_issuers(issuer: str) -> frozenset[str]:
    """The discovery ``issuer`` and its twin with or without ``https://``.

    Google documents that its ID tokens carry either ``https://accounts.google.com``
    or ``accounts.google.com``.
    """
    if issuer.startswith("https://"):
        return frozenset({issuer, issuer.removeprefix("https://")})
    if "://" not in issuer:
        return frozenset({issuer, "https://" + issuer})
    return frozenset({issuer})


class GoogleIdentityProvider(OidcIdentityProvider):
    """The OIDC adapter named ``google``, accepting Google's two issuer spellings."""

    def __init__(self, discovery_url: str, **options: Any) -> None:
        super().__init__("google", discovery_url, **options)

    def accepted_issuers(self, issuer: str) -> frozenset[str]:
        return accepted_issuers(issuer)
