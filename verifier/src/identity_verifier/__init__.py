"""Verify the identity service's access tokens in the services behind it.

from identity_verifier import Verifier, InvalidToken
verifier = Verifier(issuer="https://id.example.com", audience="identity")
claims = await verifier.verify(token)   # dict of claims, or raises InvalidToken
"""

from identity_verifier._aiohttp import require_org, require_permission
from identity_verifier._errors import InvalidToken, IssuerUnavailable
from identity_verifier._verifier import Verifier

__all__ = ["InvalidToken", "IssuerUnavailable", "Verifier", "require_org", "require_permission"]
