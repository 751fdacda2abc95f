"""OpenID Connect identity providers (relying-party side)."""

from identity.adapters.oidc.google import GoogleIdentityProvider, accepted_issuers

__all__ = ["GoogleIdentityProvider", "accepted_issuers"]
