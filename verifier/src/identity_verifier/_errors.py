"""The two ways a verification can fail."""

from __future__ import annotations


class InvalidToken(Exception):
    """The token must not be trusted; ``reason`` says why in a few words.

    The reason is safe to show to the caller (``error_description``): it names
    the failed check, never a key or the token itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(Exception):
    """The token could not be judged: the issuer's keys were never fetched, or
    ``introspect_with`` is set and the introspection endpoint did not answer.

    The middlewares answer 503: the token may well be good, so a 401 (which
    tells a client to drop its tokens) would be wrong.
    """


class InsufficientScope(Exception):
    """A valid token without a scope the route needs (``require_scope``): answer 403
    with ``WWW-Authenticate: Bearer error="insufficient_scope"``."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"missing scope: {' '.join(missing)}")
        self.missing = missing
        self.reason = f"missing scope: {' '.join(missing)}"
