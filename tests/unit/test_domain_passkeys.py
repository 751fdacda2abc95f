"""Passkeys in the domain: the counter rule, names, origins, flows, sign-in methods."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import LastSignInMethodError
from identity.domain.passkeys import (
    Ceremony,
    InvalidPasskeyNameError,
    Passkey,
    SignCountRegressedError,
    WebAuthnFlow,
    WebAuthnInvalidError,
    origin_problem,
    passkey_name,
    reported_transports,
    rp_id_problem,
)
from identity.domain.sign_in_methods import SignInMethods

NOW = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
TENANT = uuid.uuid4()
USER = uuid.uuid4()


def passkey(sign_count: int = 0, backup_eligible: bool = False) -> Passkey:
    return Passkey(
        id=uuid.uuid4(),
        tenant_id=TENANT,
        user_id=USER,
        credential_id=b"cred",
        public_key=b"key",
        sign_count=sign_count,
        transports=(),
        backup_eligible=backup_eligible,
        backed_up=False,
        aaguid="00000000-0000-0000-0000-000000000000",
        name="Key",
        created_at=NOW,
    )


@pytest.mark.parametrize(
    ("stored", "presented", "accepted"),
    [
        (0, 0, True),
        (0, 1, True),
        (5, 6, True),
        (5, 5, False),
        (5, 4, False),
        (5, 0, False),
        (0, 7, True),
    ],
)
def test_the_counter_must_grow_when_either_is_non_zero(
    stored: int, presented: int, accepted: bool
) -> None:
    key = passkey(stored)
    if accepted:
        key.record_sign_in(presented, True, NOW)
        assert (key.sign_count, key.backed_up, key.last_used_at) == (presented, True, NOW)
    else:
        with pytest.raises(SignCountRegressedError):
            key.record_sign_in(presented, True, NOW)
        assert key.sign_count == stored and key.last_used_at is None


def test_a_regression_is_a_failed_webauthn_check() -> None:
    assert issubclass(SignCountRegressedError, WebAuthnInvalidError)


def test_amr_says_software_key_for_syncable_and_hardware_key_otherwise() -> None:
    assert passkey(backup_eligible=True).amr == ("swk", "user")
    assert passkey(backup_eligible=False).amr == ("hwk", "user")


@pytest.mark.parametrize("raw", ["", "   ", "x" * 65, "tab\there"])
def test_bad_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPasskeyNameError):
        passkey_name(raw)


def test_names_are_trimmed() -> None:
    assert passkey_name("  My phone ") == "My phone"
    assert passkey_name("x" * 64) == "x" * 64


def test_only_known_transports_are_kept_once() -> None:
    assert reported_transports(["usb", "nfc", "usb", "carrier-pigeon"]) == ("usb", "nfc")


@pytest.mark.parametrize(
    ("origin", "rp_id", "ok"),
    [
        ("https://example.com", "example.com", True),
        ("https://login.example.com:8443", "example.com", True),
        ("http://localhost:8000", "localhost", True),
        ("http://example.com", "example.com", False),
        ("https://evil-example.com", "example.com", False),
        ("https://example.com/path", "example.com", False),
        ("ftp://example.com", "example.com", False),
        ("https://example.com:99999", "example.com", False),
        ("https://other.test", "example.com", False),
    ],
)
def test_origins_must_fit_the_rp_id(origin: str, rp_id: str, ok: bool) -> None:
    assert (origin_problem(origin, rp_id) is None) is ok


@pytest.mark.parametrize(
    ("rp_id", "ok"),
    [
        ("example.com", True),
        ("localhost", True),
        ("Example.com", False),
        ("", False),
        ("exa mple.com", False),
        ("-bad.com", False),
        ("https://example.com", False),
    ],
)
def test_rp_ids_are_host_names(rp_id: str, ok: bool) -> None:
    assert (rp_id_problem(rp_id) is None) is ok


def flow(ceremony: Ceremony, user_id: uuid.UUID | None, email_bound: bool = False) -> WebAuthnFlow:
    return WebAuthnFlow(
        key="k",
        tenant_id=TENANT,
        ceremony=ceremony,
        user_id=user_id,
        email_bound=email_bound,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
    )


def test_a_flow_finishes_only_its_tenant_ceremony_user_and_time() -> None:
    registration = flow(Ceremony.REGISTRATION, USER)
    registration.ensure_finishes(TENANT, Ceremony.REGISTRATION, NOW, USER)
    for tenant, ceremony, now, user in [
        (uuid.uuid4(), Ceremony.REGISTRATION, NOW, USER),
        (TENANT, Ceremony.AUTHENTICATION, NOW, USER),
        (TENANT, Ceremony.REGISTRATION, NOW + timedelta(minutes=5), USER),
        (TENANT, Ceremony.REGISTRATION, NOW, uuid.uuid4()),
    ]:
        with pytest.raises(WebAuthnInvalidError):
            registration.ensure_finishes(tenant, ceremony, now, user)


def test_an_email_bound_login_flow_admits_only_that_accounts_passkeys() -> None:
    key = passkey()
    assert flow(Ceremony.AUTHENTICATION, None).admits(key)
    assert flow(Ceremony.AUTHENTICATION, USER, email_bound=True).admits(key)
    assert not flow(Ceremony.AUTHENTICATION, uuid.uuid4(), email_bound=True).admits(key)
    assert not flow(Ceremony.AUTHENTICATION, None, email_bound=True).admits(key)


def account(password: bool) -> Account:
    return Account(
        id=USER,
        tenant_id=TENANT,
        email=Email("ada@example.com"),
        created_at=NOW,
        updated_at=NOW,
        password_hash="hash" if password else None,
    )


@pytest.mark.parametrize(
    ("password", "identities", "passkeys", "removable"),
    [
        (False, 1, 0, False),
        (False, 0, 1, False),
        (False, 1, 1, True),
        (True, 0, 1, True),
        (False, 0, 2, True),
        (False, 2, 0, True),
    ],
)
def test_one_rule_counts_password_identities_and_passkeys(
    password: bool, identities: int, passkeys: int, removable: bool
) -> None:
    methods = SignInMethods.of(account(password), identities=identities, passkeys=passkeys)
    if removable:
        methods.ensure_one_remains_without("x")
    else:
        with pytest.raises(LastSignInMethodError):
            methods.ensure_one_remains_without("x")
