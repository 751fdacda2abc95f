"""Races on real PostgreSQL through the real use cases, wired as the container wires them.

Each race starts many tasks, each with its own unit of work and connection,
and releases them together with one ``asyncio.Barrier``. Every race runs for
several rounds so a lucky interleaving cannot make it pass.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import attrs
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor
from identity.adapters.clock import SystemClock
from identity.adapters.common_passwords import ZxcvbnCommonPasswords
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.ratelimit.memory import MemoryRateLimiter
from identity.adapters.sealing import Sealer
from identity.adapters.signing_keys import KeyEncryptor, KeyRing, generate_signing_key
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.application.accounts import (
    AccountServices,
    CodeSent,
    IssueRequestedCodes,
    Register,
    RegisterUser,
    VerifyCode,
    VerifyOtp,
)
from identity.application.mail_templates import MailTemplates
from identity.application.otp_codes import CodeDigester
from identity.application.ports import UnitOfWorkFactory
from identity.application.sessions import RefreshSession, SessionServices
from identity.application.throttle import Throttle
from identity.application.tokens import SessionTokens, TokenPair
from identity.domain.emails import Email
from identity.domain.errors import OtpInvalidError
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpPurpose
from identity.domain.ratelimits import parse_rate_limit
from identity.domain.tenants import Tenant
from tests.fakes import code_in, default_policy

SECRET_KEY = "race-test-secret-key-0123456789abcdefghij"
PASSWORD = "correct horse battery staple"
ROUNDS = 5
REFRESHERS = 20
VERIFIERS = 10
REGISTRANTS = 10

T_ = TypeVar("T_")


@attrs.frozen
class Wired:
    uow: UnitOfWorkFactory
    tenant: Tenant
    accounts: AccountServices
    sessions: SessionServices
    codec: JwtTokenCodec
    engine: AsyncEngine

    async def take_mails(self) -> list[EmailMessage]:
        """Every queued message, marked sent (what an outbox worker would do)."""
        async with self.uow() as uow:
            items = await uow.outbox.claim_due(SystemClock().now(), 1000, timedelta(minutes=5))
            for item in items:
                await uow.outbox.mark_sent(item.id, SystemClock().now())
            await uow.commit()
        return [item.message for item in items]

    async def register(self, email: str) -> str:
        """Register ``email``; return the code mailed for it."""
        await RegisterUser(self.accounts)(Register(self.tenant, Email(email), PASSWORD))
        await IssueRequestedCodes(self.accounts)()
        [mail] = await self.take_mails()
        assert mail.to == email
        return code_in(mail)

    def verify(self, email: str, code: str) -> Awaitable[TokenPair]:
        command = VerifyCode(self.tenant, Email(email), code, OtpPurpose.VERIFICATION)
        return VerifyOtp(self.accounts)(command)


@pytest.fixture
async def wired(migrated_postgres_url: str) -> AsyncIterator[Wired]:
    # Bigger than any race below, so every racer holds its own connection at once.
    engine = make_engine(migrated_postgres_url, pool_size=25)
    executor = make_hasher_executor(4)
    clock = SystemClock()
    encryptor = KeyEncryptor(SECRET_KEY)
    keyring = KeyRing.load([generate_signing_key("EdDSA", encryptor, clock.now())], encryptor)
    codec = JwtTokenCodec(
        keyring, issuer="http://127.0.0.1:8000", audience="identity", leeway_seconds=30
    )
    plenty = parse_rate_limit("100000/minute")
    policy = default_policy(
        rate_limit_login=plenty,
        rate_limit_otp_request=plenty,
        rate_limit_otp_verify=plenty,
        refresh_reuse_grace=timedelta(seconds=10),
    )
    uow = functools.partial(SqlUnitOfWork, engine, Sealer(SECRET_KEY, "outbox"))
    hasher = BcryptSha256Hasher(4, executor)
    common = ZxcvbnCommonPasswords()
    templates = MailTemplates("identity@example.test")
    tokens = SessionTokens(codec, clock)
    accounts = AccountServices(
        uow=uow,
        clock=clock,
        hasher=hasher,
        common_passwords=common,
        digester=CodeDigester(SECRET_KEY),
        templates=templates,
        tokens=tokens,
        throttle=Throttle(MemoryRateLimiter(SystemClock())),
        policy=policy,
    )
    sessions = SessionServices(
        uow=uow,
        clock=clock,
        codec=codec,
        tokens=tokens,
        hasher=hasher,
        common_passwords=common,
        templates=templates,
        policy=policy,
        session_reader=SqlActiveSessionReader(engine),
    )
    try:
        async with uow() as unit:
            tenant = await unit.tenants.get_by_slug("default")
        assert tenant is not None, "the migrations create the default tenant"
        yield Wired(uow, tenant, accounts, sessions, codec, engine)
    finally:
        await engine.dispose()
        executor.shutdown(wait=True)


async def race(count: int, attempt: Callable[[], Awaitable[T_]]) -> list[T_ | BaseException]:
    barrier = asyncio.Barrier(count)

    async def one() -> T_:
        await barrier.wait()
        return await attempt()

    return await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)


def errors(results: list[Any]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException)]


async def test_concurrent_refreshes_of_one_token_share_one_successor(wired: Wired) -> None:
    pair = await wired.verify("refresh@example.test", await wired.register("refresh@example.test"))
    refresh = RefreshSession(wired.sessions)
    presented = pair.refresh_token

    for round_number in range(ROUNDS):
        presented_jti = wired.codec.decode_refresh(presented).token_id
        results = await race(REFRESHERS, functools.partial(refresh, wired.tenant, presented))

        # With a 10 s grace window every caller succeeds, and all get the same successor.
        assert errors(results) == [], f"round {round_number}"
        successors = {r.refresh_token for r in results if isinstance(r, TokenPair)}
        assert len(successors) == 1, f"round {round_number}: {len(successors)} successors"
        [successor] = successors
        assert successor != presented
        claims = wired.codec.decode_refresh(successor)

        # Exactly one rotation: had two callers rotated, the row's previous token
        # would be the first successor, not the presented one.
        async with wired.uow() as uow:
            session = await uow.sessions.get(wired.tenant.id, claims.session_id)
        assert session is not None and session.revoked_at is None
        assert session.refresh_jti == claims.token_id
        assert session.previous_refresh_jti == presented_jti
        presented = successor

    async with wired.uow() as uow:
        active = await uow.sessions.list_active_for_account(
            wired.tenant.id, pair.account.id, SystemClock().now()
        )
    assert [s.id for s in active] == [claims.session_id]


async def test_concurrent_verifications_of_one_code_let_exactly_one_in(wired: Wired) -> None:
    for round_number in range(ROUNDS):
        email = f"verify-{round_number}@example.test"
        code = await wired.register(email)

        results = await race(VERIFIERS, functools.partial(wired.verify, email, code))

        winners = [r for r in results if isinstance(r, TokenPair)]
        losers = [r for r in results if isinstance(r, OtpInvalidError)]
        assert (len(winners), len(losers)) == (1, VERIFIERS - 1), [
            type(r).__name__ for r in results
        ]
        [winner] = winners
        assert winner.account.is_verified
        async with wired.uow() as uow:
            account = await uow.accounts.get_by_email(wired.tenant.id, email)
            assert account is not None and account.is_verified
            sessions = await uow.sessions.list_active_for_account(
                wired.tenant.id, account.id, SystemClock().now()
            )
        # One code, one session: no loser opened one before failing.
        assert len(sessions) == 1


async def test_concurrent_registrations_of_one_email_make_one_account(wired: Wired) -> None:
    for round_number in range(3):
        email = f"register-{round_number}@example.test"
        command = Register(wired.tenant, Email(email), PASSWORD, full_name="Racer")

        results = await race(REGISTRANTS, functools.partial(RegisterUser(wired.accounts), command))

        assert errors(results) == []
        assert set(results) == {CodeSent(email, 10)}
        # The requests are carried out by several workers at once (several processes).
        handled = await race(REGISTRANTS, IssueRequestedCodes(wired.accounts))
        assert errors(handled) == []
        assert sum(handled) == REGISTRANTS  # each request taken by exactly one worker
        async with wired.engine.connect() as connection:
            rows = await connection.execute(
                select(func.count())
                .select_from(t.users)
                .where(t.users.c.tenant_id == wired.tenant.id, t.users.c.normalized_email == email)
            )
            assert rows.scalar_one() == 1
        # One live code, mailed once: the losers found the winner's fresh code.
        [mail] = await wired.take_mails()
        pair = await wired.verify(email, code_in(mail))
        assert pair.account.email.value == email
