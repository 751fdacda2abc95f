"""What the unit tests run the use cases on: real adapters where they are fast, fakes
where they are not (storage in memory, a clock moved by hand).

``make_services()`` wires ``AccountServices`` and ``SessionServices`` to one
``MemoryStore``, a ``ManualClock``, bcrypt at 4 rounds, the in-memory rate
limiter on that clock and a real JWT codec, with a ``default`` tenant.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor
from identity.adapters.clock import ManualClock
from identity.adapters.common_passwords import ZxcvbnCommonPasswords
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.memory import (
    MemoryActiveSessionReader,
    MemoryStore,
    MemoryUnitOfWork,
    memory_uow_factory,
)
from identity.adapters.ratelimit.memory import MemoryRateLimiter
from identity.adapters.signing_keys import KeyEncryptor, KeyRing, generate_signing_key
from identity.adapters.totp import PyotpTotpEngine
from identity.application.accounts import (
    AccountServices,
    IssueRequestedCodes,
    LogIn,
    LogInWithPassword,
    Register,
    RegisterUser,
    VerifyCode,
    VerifyOtp,
)
from identity.application.first_factor import SignInResult
from identity.application.mail_templates import MailTemplates
from identity.application.mfa import MfaServices
from identity.application.otp_codes import CodeDigester
from identity.application.policy import Policy
from identity.application.recovery_codes import RecoveryCodeDigester
from identity.application.sessions import Authenticate, Principal, SessionServices
from identity.application.throttle import Throttle
from identity.application.tokens import ClientInfo, SessionTokens, TokenPair
from identity.domain.emails import Email
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpPurpose
from identity.domain.ratelimits import parse_rate_limit
from identity.domain.tenants import DEFAULT_TENANT_SLUG, Tenant

ISSUER = "https://id.example.test"
AUDIENCE = "example-app"
SENDER = "identity@example.test"
SECRET_KEY = "unit-test-master-secret"
PASSWORD = "correct horse battery staple"
# PyJWT checks iat and exp against the real clock, not ours; a leeway wider
# than the refresh lifetime lets the tests move the fixed clock by weeks. Token
# expiry itself is covered by test_jwt_tokens; here a session ends when the
# fixed clock says so.
CODEC_LEEWAY_SECONDS = 90 * 24 * 3600.0

_CODE = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)
# One small pool for every test: bcrypt at 4 rounds takes about a millisecond.
_HASHER_EXECUTOR = make_hasher_executor(2)
_ENCRYPTOR = KeyEncryptor(SECRET_KEY)


def manual_clock() -> ManualClock:
    """A clock moved by hand, on a whole second near the real time: the JWT library's
    own checks agree with it, and times survive the whole seconds of a JWT."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def default_policy(**overrides: Any) -> Policy:
    """The documented defaults (API.md §3-5), with ``overrides`` applied."""
    values: dict[str, Any] = {
        "access_token_ttl": timedelta(minutes=15),
        "refresh_token_ttl": timedelta(days=30),
        "otp_ttl": timedelta(minutes=10),
        "otp_max_attempts": 5,
        "refresh_reuse_grace": timedelta(seconds=10),
        "email_from": SENDER,
        "rate_limit_login": parse_rate_limit("5/minute"),
        "rate_limit_otp_request": parse_rate_limit("5/hour"),
        "rate_limit_otp_verify": parse_rate_limit("10/15m"),
    }
    values.update(overrides)
    return Policy(**values)


def make_codec(clock: ManualClock) -> JwtTokenCodec:
    ring = KeyRing.load([generate_signing_key("EdDSA", _ENCRYPTOR, clock.now())], _ENCRYPTOR)
    return JwtTokenCodec(
        ring, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=CODEC_LEEWAY_SECONDS
    )


@attrs.define
class Services:
    """Everything a use-case test needs, sharing one store and one clock."""

    store: MemoryStore
    clock: ManualClock
    hasher: BcryptSha256Hasher
    limiter: MemoryRateLimiter
    codec: JwtTokenCodec
    policy: Policy
    tenant: Tenant
    accounts: AccountServices
    sessions: SessionServices
    mfa: MfaServices

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    def mails_to(self, address: str) -> list[EmailMessage]:
        """Committed outbox messages to ``address``, oldest first."""
        return self.store.messages(to=address)

    def last_code(self, address: str) -> str:
        """The 6-digit code in the newest mail to ``address``; fails if it has none."""
        mails = self.mails_to(address)
        assert mails, f"no mail to {address}"
        return code_in(mails[-1])

    async def create_tenant(self, slug: str, **settings: Any) -> Tenant:
        tenant = Tenant(
            id=uuid.uuid4(),
            slug=slug,
            name=slug.title(),
            created_at=self.clock.now(),
            settings=dict(settings),
        )
        async with self.uow() as uow:
            await uow.tenants.add(tenant)
            await uow.commit()
        return tenant

    async def register_verified(
        self,
        email: str,
        password: str | None = PASSWORD,
        *,
        tenant: Tenant | None = None,
        client: ClientInfo | None = None,
    ) -> TokenPair:
        """Register ``email`` and spend the mailed code: a verified account, logged in."""
        tenant = tenant or self.tenant
        address = Email(email)
        await RegisterUser(self.accounts)(Register(tenant, address, password))
        await self.issue_requested_codes()
        code = self.last_code(email)
        result = await VerifyOtp(self.accounts)(
            VerifyCode(tenant, address, code, OtpPurpose.VERIFICATION, client or ClientInfo())
        )
        assert isinstance(result, TokenPair), result
        return result

    async def issue_requested_codes(self) -> int:
        """What the server's background worker does after register and request-otp."""
        return await IssueRequestedCodes(self.accounts)()

    async def log_in(
        self, email: str, password: str = PASSWORD, *, tenant: Tenant | None = None
    ) -> TokenPair:
        result = await self.sign_in(email, password, tenant=tenant)
        assert isinstance(result, TokenPair), result
        return result

    async def sign_in(
        self,
        email: str,
        password: str = PASSWORD,
        *,
        tenant: Tenant | None = None,
        client: ClientInfo | None = None,
    ) -> SignInResult:
        """Password login: tokens, or ``MfaRequired`` for an account with MFA on."""
        return await LogInWithPassword(self.accounts)(
            LogIn(tenant or self.tenant, Email(email), password, client or ClientInfo())
        )

    async def principal(self, pair: TokenPair) -> Principal:
        return await Authenticate(self.sessions)(pair.tenant, pair.access_token)


def code_in(message: EmailMessage) -> str:
    match = _CODE.search(message.text)
    assert match is not None, f"no code in the mail {message.subject!r}"
    return match.group(1)


async def make_services(
    *,
    store: MemoryStore | None = None,
    clock: ManualClock | None = None,
    rounds: int = 4,
    policy: Policy | None = None,
    tenant: Tenant | None = None,
    codec: JwtTokenCodec | None = None,
    limiter: MemoryRateLimiter | None = None,
) -> Services:
    """Wire the use cases to fakes; pass ``store``/``clock``/``tenant``/``codec`` to share them.

    Without ``tenant``, the ``default`` tenant is created in the store.
    """
    store = store or MemoryStore()
    clock = clock or manual_clock()
    policy = policy or default_policy()
    codec = codec or make_codec(clock)
    limiter = limiter or MemoryRateLimiter(clock)
    hasher = BcryptSha256Hasher(rounds=rounds, executor=_HASHER_EXECUTOR)
    common = ZxcvbnCommonPasswords()
    templates = MailTemplates(SENDER)
    tokens = SessionTokens(codec, clock)
    uow = memory_uow_factory(store)
    accounts = AccountServices(
        uow=uow,
        clock=clock,
        hasher=hasher,
        common_passwords=common,
        digester=CodeDigester(SECRET_KEY),
        templates=templates,
        tokens=tokens,
        throttle=Throttle(limiter),
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
        session_reader=MemoryActiveSessionReader(store),
    )
    mfa = MfaServices(
        uow=uow,
        clock=clock,
        totp=PyotpTotpEngine(),
        digester=RecoveryCodeDigester(SECRET_KEY),
        tokens=tokens,
        throttle=Throttle(limiter),
        policy=policy,
    )
    if tenant is None:
        tenant = Tenant(
            id=uuid.uuid4(), slug=DEFAULT_TENANT_SLUG, name="Default", created_at=clock.now()
        )
        async with MemoryUnitOfWork(store) as unit:
            await unit.tenants.add(tenant)
            await unit.commit()
    return Services(
        store=store,
        clock=clock,
        hasher=hasher,
        limiter=limiter,
        codec=codec,
        policy=policy,
        tenant=tenant,
        accounts=accounts,
        sessions=sessions,
        mfa=mfa,
    )
