"""The admin and self-service use cases on the in-memory store."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.adapters.memory import MemoryUnitOfWork
from identity.application import admin, self_service
from identity.application.accounts import RequestCode, RequestOtp
from identity.application.pagination import page_of
from identity.application.ports import Position
from identity.application.sessions import Authenticate, RefreshSession
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    AccountNotFoundError,
    EmailAlreadyRegisteredError,
    InvalidCredentialsError,
    InvalidTokenError,
    OtpInvalidError,
    WeakPasswordError,
)
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.otp import OtpPurpose
from identity.domain.sessions import Session
from identity.entrypoints.http.pagination import InvalidCursorError, decode_cursor, encode_cursor
from tests.fakes import PASSWORD, Services, make_services


@pytest.fixture
async def s() -> Services:
    return await make_services()


def services(s: Services) -> admin.AdminServices:
    return admin.AdminServices(s.accounts.uow, s.clock, s.hasher, s.accounts.common_passwords)


async def test_create_find_change_and_delete(s: Services) -> None:
    a = services(s)
    created = await admin.CreateUser(a)(
        admin.NewUser(s.tenant, Email("ann@example.com"), PASSWORD, "Ann", verified=True)
    )
    assert created.account.is_verified and created.account.has_password
    with pytest.raises(EmailAlreadyRegisteredError):
        await admin.CreateUser(a)(admin.NewUser(s.tenant, Email("ANN@example.com")))
    with pytest.raises(WeakPasswordError):
        await admin.CreateUser(a)(admin.NewUser(s.tenant, Email("b@example.com"), "password"))

    pair = await s.log_in("ann@example.com")
    user_id = created.account.id
    found = await admin.GetUser(a)(s.tenant, user_id)
    assert found.account.last_login_at == s.clock.now()

    changed = await admin.UpdateUser(a)(
        admin.UserChanges(s.tenant, user_id, full_name="Ann B.", is_verified=False)
    )
    assert (changed.account.full_name, changed.account.is_verified) == ("Ann B.", False)
    page = await admin.ListUsers(a)(admin.FindUsers(s.tenant, Email("ANN@example.com")))
    assert [user.account.id for user in page.items] == [user_id] and page.next is None

    await admin.DeleteUser(a)(s.tenant, user_id)
    with pytest.raises(AccountNotFoundError):
        await admin.GetUser(a)(s.tenant, user_id)
    with pytest.raises(InvalidTokenError):
        await s.principal(pair)
    with pytest.raises(InvalidTokenError):
        await RefreshSession(s.sessions)(s.tenant, pair.refresh_token)


def rows_of(s: Services) -> list[object]:
    return list(s.store.table("challenges").values())


async def test_delete_erases_every_row_tied_to_the_account(s: Services) -> None:
    pair = await s.register_verified("cy@example.com")
    await s.log_in("cy@example.com")
    account = pair.account
    async with s.uow() as uow:
        await uow.external_identities.add(
            LinkedIdentity(
                uuid.uuid4(), s.tenant.id, account.id, "google", "g1", None, s.clock.now()
            )
        )
        await uow.commit()
    s.clock.advance(seconds=61)
    await RequestOtp(s.accounts)(RequestCode(s.tenant, account.email, OtpPurpose.LOGIN))
    await s.issue_requested_codes()
    assert any(getattr(row, "email_key", None) == account.email.key for row in rows_of(s))
    other = await s.register_verified("dee@example.com")

    await admin.DeleteUser(services(s))(s.tenant, account.id)

    def rows(table: str) -> list[object]:
        return list(s.store.table(table).values())

    assert all(getattr(row, "user_id", None) != account.id for row in rows("sessions"))
    assert all(getattr(row, "user_id", None) != account.id for row in rows("external_identities"))
    assert all(getattr(row, "email_key", None) != account.email.key for row in rows("challenges"))
    assert await s.principal(other)  # the neighbour is untouched


async def test_another_tenants_user_is_not_found_and_untouched(s: Services) -> None:
    acme = await s.create_tenant("acme")
    pair = await s.register_verified("eve@example.com")
    a = services(s)
    for use_case in (admin.GetUser(a), admin.DeleteUser(a), admin.LogOutUser(a)):
        with pytest.raises(AccountNotFoundError):
            await use_case(acme, pair.account.id)
    with pytest.raises(AccountNotFoundError):
        await admin.UpdateUser(a)(admin.UserChanges(acme, pair.account.id, is_active=False))
    assert (await admin.ListUsers(a)(admin.FindUsers(acme))).items == []
    assert await s.principal(pair)


async def test_disabling_ends_every_session_and_enabling_opens_none(s: Services) -> None:
    first = await s.register_verified("fay@example.com")
    second = await s.log_in("fay@example.com")
    a = services(s)
    await admin.UpdateUser(a)(admin.UserChanges(s.tenant, first.account.id, is_active=False))
    for pair in (first, second):
        with pytest.raises(InvalidTokenError):
            await s.principal(pair)
        with pytest.raises((InvalidTokenError, AccountDisabledError)):
            await RefreshSession(s.sessions)(s.tenant, pair.refresh_token)
    assert await admin.ListUserSessions(a)(s.tenant, first.account.id) == []
    await admin.UpdateUser(a)(admin.UserChanges(s.tenant, first.account.id, is_active=True))
    with pytest.raises(InvalidTokenError):
        await s.principal(first)
    assert await s.principal(await s.log_in("fay@example.com"))


async def test_a_login_that_loses_the_race_with_a_delete_opens_no_session(s: Services) -> None:
    pair = await s.register_verified("gil@example.com")
    async with MemoryUnitOfWork(s.store) as uow:
        assert await uow.accounts.delete(s.tenant.id, pair.account.id)
        # The session insert checks the account in the same transaction.
        now = s.clock.now()
        session = Session(
            uuid.uuid4(), s.tenant.id, pair.account.id, now, now, "jti", now, now + timedelta(1)
        )
        assert not await uow.sessions.add(session)
        await uow.commit()
    with pytest.raises(InvalidCredentialsError):
        await s.log_in("gil@example.com")


async def test_self_service_delete_needs_the_password_or_a_deletion_code(s: Services) -> None:
    with_password = await s.register_verified("hal@example.com")
    principal = await s.principal(with_password)
    delete = self_service.DeleteOwnAccount(s.accounts)
    with pytest.raises(InvalidCredentialsError):
        await delete(self_service.DeleteAccountCommand(principal, password="wrong password!"))
    await delete(self_service.DeleteAccountCommand(principal, password=PASSWORD))
    with pytest.raises(InvalidTokenError):
        await s.principal(with_password)

    without = await s.register_verified("ivy@example.com", password=None)
    principal = await s.principal(without)
    with pytest.raises(InvalidCredentialsError):
        await delete(self_service.DeleteAccountCommand(principal, password=PASSWORD))
    await RequestOtp(s.accounts)(
        RequestCode(s.tenant, Email("ivy@example.com"), OtpPurpose.ACCOUNT_DELETION)
    )
    await s.issue_requested_codes()
    code = s.last_code("ivy@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(OtpInvalidError):
        await delete(self_service.DeleteAccountCommand(principal, code=wrong))
    await delete(self_service.DeleteAccountCommand(principal, code=code))
    with pytest.raises(InvalidTokenError):
        await Authenticate(s.sessions)(s.tenant, without.access_token)
    # Gone for good: the address registers anew.
    again = await s.register_verified("ivy@example.com", password=None)
    assert again.account.id != without.account.id


async def test_the_export_is_the_callers_own(s: Services) -> None:
    pair = await s.register_verified("jo@example.com")
    await s.register_verified("kim@example.com")
    export = await self_service.ExportOwnAccount(s.accounts)(await s.principal(pair))
    assert export.account.id == pair.account.id
    assert [session.user_id for session in export.sessions] == [pair.account.id]
    assert export.identities == []


def test_a_page_says_where_the_next_one_starts() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    rows = [(t0 + timedelta(seconds=n), uuid.UUID(int=n)) for n in range(4)]
    page = page_of(rows, 3, lambda row: row)
    assert page.items == rows[:3] and page.next == Position(*rows[2])
    assert page_of(rows[:3], 3, lambda row: row).next is None


def test_a_cursor_round_trips_and_junk_is_refused() -> None:
    position = Position(datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    cursor = encode_cursor(position)
    assert cursor is not None and decode_cursor(cursor) == position
    assert encode_cursor(None) is None
    for junk in ("", "!!!", "bm9wZQ", "a" * 300, cursor[:-4]):
        with pytest.raises(InvalidCursorError):
            decode_cursor(junk)


def test_a_cursor_the_event_and_delivery_lists_gave_out_still_reads() -> None:
    # They wrote the id in its dashed form before every list shared one codec.
    position = Position(datetime(2030, 1, 1, 12, 0, tzinfo=UTC), uuid.uuid4())
    raw = f"{position.created_at.isoformat()}|{position.id}".encode()
    assert decode_cursor(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == position
