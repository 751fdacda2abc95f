"""The one rule for an account's sign-in methods: never remove the last one.

An account's sign-in methods are its password, its linked provider identities
and its passkeys. The emailed login code is not counted: it is the way back in
when every other one is lost, not a method the user chose (otherwise the rule
could never fire). Both the identity unlink and the passkey removal ask here.
"""

from __future__ import annotations

import attrs

from identity.domain.accounts import Account
from identity.domain.errors import LastSignInMethodError


@attrs.frozen
class SignInMethods:
    """What an account can sign in with, counted."""

    password: bool
    identities: int
    passkeys: int

    @classmethod
    def of(cls, account: Account, *, identities: int, passkeys: int) -> SignInMethods:
        return cls(password=account.has_password, identities=identities, passkeys=passkeys)

    @property
    def count(self) -> int:
        return int(self.password) + self.identities + self.passkeys

    def ensure_one_remains_without(self, what: str) -> None:
        """Raise ``LastSignInMethodError`` when removing one method (``what``) leaves none."""
        if self.count <= 1:
            raise LastSignInMethodError(what)
