import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailNotVerifiedError,
    InvalidEmailError,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _account(**changes: object) -> Account:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "email": Email("ada@example.com"),
        "created_at": T0,
        "updated_at": T0,
        "password_hash": "bcrypt_sha256$x",
    }
    values.update(changes)
    return Account(**values)  # type: ignore[arg-type]


# --- Email ---------------------------------------------------------------------


def test_email_keeps_the_address_and_keys_it_case_insensitively() -> None:
    email = Email("Ada.Lovelace@example.com")
    assert email.value == "Ada.Lovelace@example.com"
    assert str(email) == "Ada.Lovelace@example.com"
    assert email.key == "ada.lovelace@example.com"
    assert Email("ADA.lovelace@example.com").key == email.key


def test_emails_differing_only_in_local_case_are_distinct_values_with_one_key() -> None:
    assert Email("Ada@example.com") != Email("ada@example.com")
    assert Email("Ada@example.com").key == Email("ada@example.com").key


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ada",
        "ada@",
        "@example.com",
        " ada@example.com",
        "ada@example.com ",
        "ada@Example.com",
        "ada@EXAMPLE.COM",
    ],
)
def test_email_refuses_what_is_not_normalised(raw: str) -> None:
    with pytest.raises(InvalidEmailError):
        Email(raw)


def test_email_is_immutable() -> None:
    email = Email("ada@example.com")
    with pytest.raises(AttributeError):
        email.value = "eve@example.com"  # type: ignore[misc]


# --- Account -------------------------------------------------------------------


def test_a_new_account_is_unverified_and_active() -> None:
    account = _account()
    assert account.is_active
    assert not account.is_verified
    assert account.verified_at is None


def test_verify_email_records_when_and_is_idempotent() -> None:
    account = _account()
    account.verify_email(T0 + timedelta(minutes=1))
    assert account.is_verified
    assert account.verified_at == T0 + timedelta(minutes=1)
    assert account.updated_at == T0 + timedelta(minutes=1)

    account.verify_email(T0 + timedelta(hours=1))
    assert account.verified_at == T0 + timedelta(minutes=1)
    assert account.updated_at == T0 + timedelta(minutes=1)


def test_ensure_can_log_in_refuses_an_unverified_account() -> None:
    with pytest.raises(EmailNotVerifiedError):
        _account().ensure_can_log_in()


def test_ensure_can_log_in_accepts_a_verified_active_account() -> None:
    account = _account()
    account.verify_email(T0)
    account.ensure_can_log_in()  # raises on failure


def test_disable_blocks_login_and_enable_restores_it() -> None:
    account = _account()
    account.verify_email(T0)
    account.disable(T0 + timedelta(seconds=5))
    assert (account.is_active, account.updated_at) == (False, T0 + timedelta(seconds=5))
    with pytest.raises(AccountDisabledError):
        account.ensure_can_log_in()

    account.enable(T0 + timedelta(seconds=9))
    assert (account.is_active, account.updated_at) == (True, T0 + timedelta(seconds=9))
    account.ensure_can_log_in()


def test_disabled_wins_over_unverified() -> None:
    account = _account()
    account.disable(T0)
    with pytest.raises(AccountDisabledError):
        account.ensure_can_log_in()


def test_has_password_and_set_password_hash() -> None:
    account = _account(password_hash=None)
    assert (account.has_password, account.password_hash) == (False, None)
    account.set_password_hash("bcrypt_sha256$new", T0 + timedelta(seconds=3))
    assert (account.has_password, account.password_hash) == (True, "bcrypt_sha256$new")
    assert account.updated_at == T0 + timedelta(seconds=3)


def test_the_password_hash_is_kept_out_of_repr() -> None:
    assert "bcrypt_sha256$x" not in repr(_account())
