"""Verify the identity service's access tokens in the services behind it.

from identity_verifier import Verifier, InvalidToken
verifier = Verifier(issuer="https://id.example.com", audience="identity")
claims = await verifier.verify(token)   # dict of claims, or raises InvalidToken
require_scope(claims, "payments:read")  # an OAuth client's token; InsufficientScope
"""

from identity_verifier._aiohttp import require_org, require_permission
from identity_verifier._errors import InsufficientScope, InvalidToken, IssuerUnavailable
from identity_verifier._verifier import Verifier, require_scope

__all__ = [
    "InsufficientScope",
    "InvalidToken",
    "IssuerUnavailable",
    "Verifier",
    "require_org",
    "require_permission",
    "require_scope",
]
