"""The password rules: length only, plus a refusal of the most common ones."""

from __future__ import annotations

from identity.application.ports import CommonPasswords
from identity.domain.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from identity.domain.errors import WeakPasswordError


class PasswordRejectedError(WeakPasswordError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_new_password(password: str, common: CommonPasswords, *, field: str) -> None:
    """No composition rules (NIST SP 800-63B); raise ``WeakPasswordError`` naming ``field``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejectedError(f"must be at least {MIN_PASSWORD_LENGTH} characters", field)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejectedError(f"must be at most {MAX_PASSWORD_LENGTH} characters", field)
    if common.is_common(password):
        raise PasswordRejectedError(
            "is one of the most commonly used passwords; choose another", field
        )
