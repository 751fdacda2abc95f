"""Tenant isolation as a property: random operations in two tenants over shared emails.

Hypothesis draws a list of operations (register, verify with a mailed code, login,
refresh, logout, logout everywhere, change password, request a code, disable or
enable through ``UserAdmin``, let time pass) on the tenants ``default`` and
``acme`` and a small pool of email addresses used in both. A small model per
tenant and email (exists, verified, active, password) predicts what a password
login answers. After every step:

- what a tenant's repository methods return belongs to that tenant, for every
  account, session and challenge in the store, whoever owns it;
- mail queued by an operation in one tenant carries that tenant's id;
- no row of the other tenant changed, so neither did its sessions per email;
- every token issued so far is refused by ``Authenticate``, ``RefreshSession``
  and ``LogOut`` under the other tenant, and refusing it changes nothing;
- each tenant's accounts are exactly the model's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Hashable
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.application.accounts import (
    LogIn,
    LogInWithPassword,
    Register,
    RegisterUser,
    RequestCode,
    RequestOtp,
    VerifyCode,
    VerifyOtp,
)
from identity.application.admin import UserAdmin
from identity.application.sessions import (
    Authenticate,
    ChangePassword,
    ChangePasswordCommand,
    LogOut,
    LogOutEverywhere,
    RefreshSession,
)
from identity.application.tokens import TokenPair
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    AccountNotFoundError,
    DomainError,
    EmailNotVerifiedError,
    InvalidCredentialsError,
    InvalidTokenError,
)
from identity.domain.otp import OtpPurpose
from identity.domain.ratelimits import parse_rate_limit
from identity.domain.tenants import Tenant
from tests.fakes import Services, default_policy, make_services

TENANTS = ("default", "acme")
# "Ann@" and "ann@" are one account (the key is case-insensitive) in each tenant.
EMAILS = ("ann@example.com", "bob@example.com", "Ann@example.com")
PASSWORDS = ("correct horse battery staple", "a quite different passphrase")
PURPOSES = (OtpPurpose.VERIFICATION, OtpPurpose.LOGIN)
NO_LIMITS = parse_rate_limit("100000/minute")
_CODE = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)
_TOKENS_KEPT = 3  # per tenant and email


@attrs.frozen
class Op:
    kind: str
    tenant: int  # index into TENANTS
    email: int  # index into EMAILS
    pick: int = 0  # which token, purpose or whose code, by kind
    password: int = 0  # index into PASSWORDS


KINDS = (
    "register",
    "verify",
    "verify_with_other_tenants_code",
    "request_otp",
    "login",
    "refresh",
    "logout",
    "logout_all",
    "change_password",
    "disable",
    "enable",
    "advance_clock",
)

# Drawn more often, so that most runs reach verified accounts with live sessions.
LIFECYCLE = ("register", "verify", "login") * 2

operations = st.builds(
    Op,
    kind=st.sampled_from(KINDS + LIFECYCLE),
    tenant=st.integers(0, len(TENANTS) - 1),
    email=st.integers(0, len(EMAILS) - 1),
    pick=st.integers(0, _TOKENS_KEPT - 1),
    password=st.integers(0, len(PASSWORDS) - 1),
)


@attrs.define
class Expected:
    """What the model says one tenant's account for one email is."""

    verified: bool = False
    active: bool = True
    password: str = ""


class World:
    """The services of both tenants and what the test knows about them."""

    def __init__(self, services: Services, tenants: tuple[Tenant, Tenant]) -> None:
        self.s = services
        self.tenants = tenants
        self.model: dict[tuple[int, str], Expected] = {}
        self.tokens: dict[tuple[int, str], list[TokenPair]] = {}
        self.codes: dict[tuple[int, str, OtpPurpose], str] = {}

    # --- the store, read around the use cases -----------------------------------------

    def rows(self, table: str) -> dict[Any, Any]:
        # A shallow copy is a snapshot: the store replaces a committed row on every
        # write (rows are copied in and out), it never changes one in place.
        return dict(self.s.store.table(table))

    def rows_of(self, tenant: Tenant) -> dict[str, dict[Hashable, Any]]:
        tables = ("accounts", "sessions", "challenges", "outbox", "invalidated_tokens")
        return {
            table: {key: row for key, row in self.rows(table).items() if row.tenant_id == tenant.id}
            for table in tables
        }

    def everything(self) -> dict[str, dict[Hashable, Any]]:
        return {
            table: self.rows(table)
            for table in ("accounts", "sessions", "challenges", "outbox", "invalidated_tokens")
        }

    async def active_sessions_per_email(self, tenant: Tenant) -> dict[str, int]:
        counts = {}
        async with self.s.uow() as uow:
            for address in EMAILS:
                key = Email(address).key
                account = await uow.accounts.get_by_email(tenant.id, key)
                found = (
                    []
                    if account is None
                    else await uow.sessions.list_active_for_account(
                        tenant.id, account.id, self.s.clock.now()
                    )
                )
                counts[key] = len(found)
        return counts

    def remember_codes(self, before: set[Hashable], tenant_index: int) -> None:
        """Note the codes in mail queued since ``before``; all of it is the tenant's."""
        tenant = self.tenants[tenant_index]
        rows: dict[Hashable, Any] = self.s.store.table("outbox")
        for key, row in rows.items():
            if key in before:
                continue
            assert row.tenant_id == tenant.id, f"mail of {tenant.slug} queued under another id"
            match = _CODE.search(row.message.text)
            if match is None:
                continue
            purpose = (
                OtpPurpose.LOGIN if "sign-in" in row.message.subject else OtpPurpose.VERIFICATION
            )
            self.codes[(tenant_index, Email(row.message.to).key, purpose)] = match.group(1)

    def keep(self, tenant_index: int, key: str, pair: TokenPair) -> None:
        assert pair.tenant.id == self.tenants[tenant_index].id
        assert pair.account.tenant_id == self.tenants[tenant_index].id
        assert pair.account.email.key == key
        kept = self.tokens.setdefault((tenant_index, key), [])
        kept.append(pair)
        del kept[:-_TOKENS_KEPT]

    def token(self, tenant_index: int, key: str, pick: int) -> TokenPair | None:
        kept = self.tokens.get((tenant_index, key), [])
        return kept[pick % len(kept)] if kept else None

    # --- one operation ------------------------------------------------------------------

    async def apply(self, op: Op) -> None:
        s = self.s
        tenant = self.tenants[op.tenant]
        email = Email(EMAILS[op.email])
        key = email.key
        password = PASSWORDS[op.password]
        expected = self.model.get((op.tenant, key))

        if op.kind == "register":
            await RegisterUser(s.accounts)(Register(tenant, email, password))
            await s.issue_requested_codes()
            if expected is None:
                self.model[(op.tenant, key)] = Expected(password=password)
            elif not expected.verified:
                expected.password = password
        elif op.kind in ("verify", "verify_with_other_tenants_code"):
            source = op.tenant if op.kind == "verify" else 1 - op.tenant
            # A purpose a code was mailed for, when there is one.
            mailed = [p for p in PURPOSES if (source, key, p) in self.codes] or list(PURPOSES)
            purpose = mailed[op.pick % len(mailed)]
            code = self.codes.get((source, key, purpose), "000000")
            own_code = self.codes.get((op.tenant, key, purpose))
            try:
                pair = await VerifyOtp(s.accounts)(VerifyCode(tenant, email, code, purpose))
            except DomainError:
                return
            assert op.kind == "verify" or code == own_code, "another tenant's code was accepted"
            assert expected is not None and expected.active
            expected.verified = True
            self.keep(op.tenant, key, pair)
        elif op.kind == "request_otp":
            purpose = PURPOSES[op.pick % len(PURPOSES)]
            await RequestOtp(s.accounts)(RequestCode(tenant, email, purpose))
            await s.issue_requested_codes()
        elif op.kind == "login":
            await self.log_in(op.tenant, email, password, expected)
        elif op.kind in ("refresh", "logout", "logout_all", "change_password"):
            kept = self.token(op.tenant, key, op.pick)
            if kept is not None:
                await self.use_token(op, kept, password)
        elif op.kind in ("disable", "enable"):
            admin = UserAdmin(s.accounts.uow, s.clock)
            try:
                account, _ = await admin.set_active(tenant.slug, email, op.kind == "enable")
            except AccountNotFoundError:
                assert expected is None, f"{tenant.slug} lost the account of {key}"
                return
            assert expected is not None, f"{tenant.slug} found an account of {key} it never made"
            assert account.tenant_id == tenant.id
            expected.active = op.kind == "enable"
        else:
            assert op.kind == "advance_clock"
            s.clock.advance(seconds=61)  # past the one-code-a-minute rule

    async def log_in(self, tenant_index: int, email: Email, password: str, expected: Any) -> None:
        tenant = self.tenants[tenant_index]
        try:
            pair = await LogInWithPassword(self.s.accounts)(LogIn(tenant, email, password))
        except InvalidCredentialsError:
            assert expected is None or expected.password != password, (
                f"{tenant.slug} refused the password of {email.key}"
            )
            return
        except AccountDisabledError:
            assert expected is not None and not expected.active
            assert expected.password == password
            return
        except EmailNotVerifiedError:
            assert expected is not None and expected.active and not expected.verified
            assert expected.password == password
            return
        assert expected is not None and expected.password == password, (
            f"{tenant.slug} let {email.key} in with a password it never had"
        )
        assert expected.active and expected.verified
        self.keep(tenant_index, email.key, pair)

    async def use_token(self, op: Op, pair: TokenPair, password: str) -> None:
        s = self.s
        tenant = self.tenants[op.tenant]
        key = pair.account.email.key
        if op.kind == "refresh":
            try:
                new = await RefreshSession(s.sessions)(tenant, pair.refresh_token)
            except DomainError:
                return
            self.keep(op.tenant, key, new)
            return
        if op.kind == "logout":
            await LogOut(s.sessions)(tenant, pair.refresh_token)
            return
        try:
            principal = await Authenticate(s.sessions)(tenant, pair.access_token)
        except InvalidTokenError:
            return
        assert principal.account.tenant_id == tenant.id
        if op.kind == "logout_all":
            await LogOutEverywhere(s.sessions)(principal)
            return
        current = self.model[(op.tenant, key)].password
        try:
            await ChangePassword(s.sessions)(ChangePasswordCommand(principal, current, password))
        except DomainError:
            return
        self.model[(op.tenant, key)].password = password

    # --- the invariants -------------------------------------------------------------------

    async def check_repositories(self) -> None:
        accounts = self.rows("accounts")
        sessions = self.rows("sessions")
        now = self.s.clock.now()
        async with self.s.uow() as uow:
            for index, tenant in enumerate(self.tenants):
                for account_id, owner in accounts.items():
                    found = await uow.accounts.get(tenant.id, account_id)
                    assert (found is not None) == (owner.tenant_id == tenant.id)
                    listed = await uow.sessions.list_active_for_account(tenant.id, account_id, now)
                    assert all(row.tenant_id == tenant.id for row in listed)
                    if owner.tenant_id != tenant.id:
                        assert listed == []
                for session_id, owner in sessions.items():
                    found_session = await uow.sessions.get(tenant.id, session_id)
                    assert (found_session is not None) == (owner.tenant_id == tenant.id)
                for address in EMAILS:
                    key = Email(address).key
                    account = await uow.accounts.get_by_email(tenant.id, key)
                    expected = self.model.get((index, key))
                    assert (account is None) == (expected is None), (tenant.slug, key)
                    if account is not None and expected is not None:
                        assert account.tenant_id == tenant.id
                        assert (account.is_verified, account.is_active) == (
                            expected.verified,
                            expected.active,
                        ), (tenant.slug, key)
                    for purpose in OtpPurpose:
                        challenge = await uow.challenges.get(tenant.id, key, purpose)
                        assert challenge is None or challenge.tenant_id == tenant.id

    async def check_tokens_refused_elsewhere(self) -> None:
        s = self.s
        before = self.everything()
        for (index, _), pairs in self.tokens.items():
            other = self.tenants[1 - index]
            for pair in pairs:
                for use_case, token in (
                    (Authenticate(s.sessions), pair.access_token),
                    (RefreshSession(s.sessions), pair.refresh_token),
                    (LogOut(s.sessions), pair.refresh_token),
                ):
                    try:
                        await use_case(other, token)
                    except InvalidTokenError:
                        continue
                    raise AssertionError(f"a token of {pair.tenant.slug} worked in {other.slug}")
        assert self.everything() == before, "a refused token changed the store"


async def run(ops: list[Op]) -> World:
    policy = default_policy(
        rate_limit_login=NO_LIMITS,
        rate_limit_otp_request=NO_LIMITS,
        rate_limit_otp_verify=NO_LIMITS,
    )
    services = await make_services(policy=policy)
    acme = await services.create_tenant("acme")
    world = World(services, (services.tenant, acme))
    for op in ops:
        other = world.tenants[1 - op.tenant]
        other_rows = world.rows_of(other)
        other_sessions = await world.active_sessions_per_email(other)
        outbox_before = set(services.store.table("outbox"))

        await world.apply(op)

        world.remember_codes(outbox_before, op.tenant)
        if op.kind != "advance_clock":
            assert world.rows_of(other) == other_rows, f"{op} changed {other.slug}'s rows"
            assert await world.active_sessions_per_email(other) == other_sessions
        await world.check_repositories()
        await world.check_tokens_refused_elsewhere()
    return world


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=15, max_size=40))
def test_operations_in_one_tenant_never_reach_the_other(ops: list[Op]) -> None:
    asyncio.run(run(ops))


def test_a_scripted_run_through_both_tenants() -> None:
    """A fixed sequence that surely visits every operation with a live account in both."""
    ops = []
    for tenant in (0, 1):
        ops += [
            Op("register", tenant, 0, password=tenant),
            Op("verify", tenant, 0, pick=0),
            Op("login", tenant, 0, password=tenant),
            Op("login", tenant, 2, password=1 - tenant),
            Op("refresh", tenant, 0),
            Op("register", tenant, 1),
            Op("verify_with_other_tenants_code", tenant, 1, pick=0),
            Op("request_otp", tenant, 0, pick=1),
            Op("verify", tenant, 0, pick=1),
            Op("change_password", tenant, 0, pick=1, password=1 - tenant),
            Op("login", tenant, 0, password=1 - tenant),
            Op("logout", tenant, 0, pick=0),
            Op("logout_all", tenant, 0, pick=2),
            Op("disable", tenant, 0),
            Op("login", tenant, 0, password=1 - tenant),
            Op("enable", tenant, 2),
            Op("disable", tenant, 1),
            Op("advance_clock", tenant, 0),
        ]
    world = asyncio.run(run(ops))
    # Both tenants got as far as live sessions, a changed password, a disabled account.
    for index in (0, 1):
        assert world.tokens[(index, EMAILS[0])], TENANTS[index]
        ann = world.model[(index, EMAILS[0])]  # disabled as ann@, enabled again as Ann@
        assert ann.verified and ann.active
        assert ann.password == PASSWORDS[1 - index]
        bob = world.model[(index, EMAILS[1])]  # the other tenant's code did not verify him
        assert not bob.verified and not bob.active
