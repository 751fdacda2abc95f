import asyncio

import attrs
import pytest

from identity.application.accounts import (
    CodeSent,
    LogIn,
    LogInWithPassword,
    Register,
    RegisterUser,
    RequestCode,
    RequestOtp,
    ResetPassword,
    ResetPasswordWithCode,
    VerifyCode,
    VerifyOtp,
)
from identity.application.sessions import Authenticate, RefreshSession
from identity.application.tokens import TokenPair
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailNotVerifiedError,
    InvalidCredentialsError,
    InvalidTokenError,
    OtpInvalidError,
    RateLimitedError,
    WeakPasswordError,
)
from identity.domain.otp import OtpPurpose
from identity.domain.tenants import Tenant
from tests.fakes import PASSWORD, Services, code_in, make_services

ADA = "ada@example.com"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def app() -> Services:
    return await make_services()


async def _register(app: Services, email: str = ADA, password: str | None = PASSWORD) -> CodeSent:
    """Register, then let the background worker carry the request out."""
    sent = await RegisterUser(app.accounts)(Register(app.tenant, Email(email), password))
    await app.issue_requested_codes()
    return sent


async def _account(app: Services, email: str = ADA, tenant: Tenant | None = None) -> Account:
    async with app.uow() as uow:
        account = await uow.accounts.get_by_email((tenant or app.tenant).id, Email(email).key)
    assert account is not None
    return account


async def _verify(app: Services, code: str, purpose: OtpPurpose, email: str = ADA) -> TokenPair:
    return await VerifyOtp(app.accounts)(VerifyCode(app.tenant, Email(email), code, purpose))


async def _request(app: Services, purpose: OtpPurpose, email: str = ADA) -> CodeSent:
    """Ask for a code, then let the background worker carry the request out."""
    sent = await RequestOtp(app.accounts)(RequestCode(app.tenant, Email(email), purpose))
    await app.issue_requested_codes()
    return sent


async def _disable(app: Services, email: str = ADA) -> None:
    async with app.uow() as uow:
        account = await uow.accounts.get_by_email(app.tenant.id, Email(email).key)
        assert account is not None
        account.disable(app.clock.now())
        await uow.accounts.update(account)
        await uow.commit()


def _has_code(app: Services, email: str = ADA) -> bool:
    try:
        code_in(app.mails_to(email)[-1])
    except AssertionError:
        return False
    return True


# --- register ------------------------------------------------------------------


async def test_register_creates_an_unverified_account_and_mails_a_code(app: Services) -> None:
    result = await _register(app)

    assert result == CodeSent(ADA, 10)
    account = await _account(app)
    assert not account.is_verified
    assert account.is_active
    assert account.has_password
    assert account.password_hash != PASSWORD
    assert await app.hasher.verify(PASSWORD, account.password_hash or "")
    [mail] = app.mails_to(ADA)
    assert mail.sender == app.policy.email_from
    assert len(code_in(mail)) == 6
    assert code_in(mail) not in mail.subject


async def test_register_answers_the_same_for_new_unverified_and_verified_emails(
    app: Services,
) -> None:
    new = await _register(app, "new@example.com")
    await _register(app, "pending@example.com")
    pending = await _register(app, "pending@example.com")
    await app.register_verified("owner@example.com")
    owner = await _register(app, "owner@example.com")

    assert new == CodeSent("new@example.com", 10)
    assert pending == CodeSent("pending@example.com", 10)
    assert owner == CodeSent("owner@example.com", 10)
    assert type(new) is type(pending) is type(owner)


async def test_a_verified_owner_registering_again_gets_a_notice_without_a_code(
    app: Services,
) -> None:
    await app.register_verified(ADA)
    before = await _account(app)
    mails_before = len(app.mails_to(ADA))

    await _register(app, ADA, "someone elses password")

    mails = app.mails_to(ADA)
    assert len(mails) == mails_before + 1
    assert not _has_code(app)
    assert "already has one" in mails[-1].text
    after = await _account(app)
    assert after.password_hash == before.password_hash
    assert after.is_verified


async def test_registering_an_unverified_email_again_replaces_its_password(app: Services) -> None:
    await _register(app, ADA, PASSWORD)
    app.clock.advance(seconds=61)
    await _register(app, ADA, NEW_PASSWORD)

    account = await _account(app)
    assert await app.hasher.verify(NEW_PASSWORD, account.password_hash or "")
    assert not await app.hasher.verify(PASSWORD, account.password_hash or "")


async def test_registering_again_within_a_minute_mails_no_second_code(app: Services) -> None:
    await _register(app)
    first_code = app.last_code(ADA)
    app.clock.advance(seconds=30)
    await _register(app)
    assert len(app.mails_to(ADA)) == 1

    app.clock.advance(seconds=30)
    await _register(app)
    assert len(app.mails_to(ADA)) == 2
    with pytest.raises(OtpInvalidError):
        await _verify(app, first_code, OtpPurpose.VERIFICATION)
    await _verify(app, app.last_code(ADA), OtpPurpose.VERIFICATION)


async def test_otp_only_registration_has_no_password(app: Services) -> None:
    await _register(app, ADA, None)

    account = await _account(app)
    assert not account.has_password
    pair = await _verify(app, app.last_code(ADA), OtpPurpose.VERIFICATION)
    assert pair.account.is_verified
    assert not pair.account.has_password
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA, "any password at all")


@pytest.mark.parametrize("password", ["short", "password", "Password123"])
async def test_register_refuses_a_weak_password_and_stores_nothing(
    app: Services, password: str
) -> None:
    with pytest.raises(WeakPasswordError):
        await _register(app, ADA, password)
    async with app.uow() as uow:
        assert await uow.accounts.get_by_email(app.tenant.id, ADA) is None
    assert app.mails_to(ADA) == []


async def test_the_email_key_is_case_insensitive(app: Services) -> None:
    await _register(app, "Ada@example.com")
    await _register(app, "ada@example.com")
    async with app.uow() as uow:
        account = await uow.accounts.get_by_email(app.tenant.id, "ada@example.com")
    assert account is not None
    assert account.email.value == "Ada@example.com"


async def test_concurrent_registrations_of_one_email_make_one_account(app: Services) -> None:
    tasks = 5  # the code-request limit
    barrier = asyncio.Barrier(tasks)

    async def register() -> CodeSent:
        await barrier.wait()
        # Without a password nothing is hashed first: the transactions overlap.
        return await _register(app, ADA, None)

    results = await asyncio.gather(*(register() for _ in range(tasks)))

    assert set(results) == {CodeSent(ADA, 10)}
    stored = [
        row
        for row in app.store.table("accounts").values()
        if isinstance(row, Account) and row.email.key == ADA
    ]
    assert len(stored) == 1
    assert len(app.mails_to(ADA)) == 1


# --- request-otp ---------------------------------------------------------------


async def test_request_otp_for_an_unknown_email_answers_the_same_and_sends_nothing(
    app: Services,
) -> None:
    await app.register_verified(ADA)
    known = await _request(app, OtpPurpose.LOGIN, ADA)
    unknown = await _request(app, OtpPurpose.LOGIN, "nobody@example.com")

    assert known == CodeSent(ADA, 10)
    assert unknown == CodeSent("nobody@example.com", 10)
    assert app.mails_to("nobody@example.com") == []
    assert _has_code(app, ADA)


async def test_request_otp_sends_nothing_to_a_disabled_account(app: Services) -> None:
    await app.register_verified(ADA)
    await _disable(app)
    mails = len(app.mails_to(ADA))
    await _request(app, OtpPurpose.LOGIN)
    await _request(app, OtpPurpose.PASSWORD_RESET)
    assert len(app.mails_to(ADA)) == mails


async def test_request_verification_for_a_verified_account_sends_nothing(app: Services) -> None:
    await app.register_verified(ADA)
    mails = len(app.mails_to(ADA))
    assert await _request(app, OtpPurpose.VERIFICATION) == CodeSent(ADA, 10)
    assert len(app.mails_to(ADA)) == mails


async def test_a_new_code_replaces_the_previous_one_after_a_minute(app: Services) -> None:
    await app.register_verified(ADA)
    await _request(app, OtpPurpose.LOGIN)
    old = app.last_code(ADA)
    app.clock.advance(seconds=59)
    await _request(app, OtpPurpose.LOGIN)
    assert app.last_code(ADA) == old  # no new mail within the minute

    app.clock.advance(seconds=1)
    await _request(app, OtpPurpose.LOGIN)
    new = app.last_code(ADA)
    with pytest.raises(OtpInvalidError):
        await _verify(app, old, OtpPurpose.LOGIN)
    pair = await _verify(app, new, OtpPurpose.LOGIN)
    assert pair.account.email.value == ADA


async def test_a_spent_code_is_replaced_at_once(app: Services) -> None:
    await app.register_verified(ADA)
    await _request(app, OtpPurpose.LOGIN)
    await _verify(app, app.last_code(ADA), OtpPurpose.LOGIN)
    mails = len(app.mails_to(ADA))
    await _request(app, OtpPurpose.LOGIN)
    assert len(app.mails_to(ADA)) == mails + 1


# --- verify-otp ----------------------------------------------------------------


async def test_verify_otp_activates_the_account_and_returns_tokens(app: Services) -> None:
    await _register(app)
    app.clock.advance(seconds=5)
    pair = await _verify(app, app.last_code(ADA), OtpPurpose.VERIFICATION)

    account = await _account(app)
    assert account.is_verified
    assert account.verified_at == app.clock.now()
    assert pair.account.id == account.id
    assert pair.tenant == app.tenant
    assert pair.expires_in == 15 * 60
    assert pair.refresh_token_expires_in == 30 * 24 * 3600
    claims = app.codec.decode_access(pair.access_token)
    assert claims.subject == account.id
    assert claims.tenant_id == app.tenant.id
    assert claims.email == ADA
    assert claims.email_verified
    refresh = app.codec.decode_refresh(pair.refresh_token)
    async with app.uow() as uow:
        session = await uow.sessions.get(app.tenant.id, refresh.session_id)
    assert session is not None
    assert session.user_id == account.id
    assert session.refresh_jti == refresh.token_id
    principal = await Authenticate(app.sessions)(app.tenant, pair.access_token)
    assert principal.account.id == account.id


async def test_a_login_code_also_activates_an_unverified_account(app: Services) -> None:
    await _register(app)
    await _request(app, OtpPurpose.LOGIN)
    pair = await _verify(app, app.last_code(ADA), OtpPurpose.LOGIN)
    assert pair.account.is_verified
    assert (await _account(app)).is_verified


async def test_a_code_is_single_use(app: Services) -> None:
    await _register(app)
    code = app.last_code(ADA)
    await _verify(app, code, OtpPurpose.VERIFICATION)
    with pytest.raises(OtpInvalidError):
        await _verify(app, code, OtpPurpose.VERIFICATION)


async def test_an_expired_code_is_refused(app: Services) -> None:
    await _register(app)
    app.clock.advance(seconds=10 * 60)
    with pytest.raises(OtpInvalidError):
        await _verify(app, app.last_code(ADA), OtpPurpose.VERIFICATION)
    assert not (await _account(app)).is_verified


async def test_verify_otp_for_an_unknown_email_is_invalid(app: Services) -> None:
    with pytest.raises(OtpInvalidError):
        await _verify(app, "123456", OtpPurpose.LOGIN, "nobody@example.com")


async def test_verify_otp_of_a_disabled_account_is_refused(app: Services) -> None:
    await _register(app)
    await _disable(app)
    with pytest.raises(AccountDisabledError):
        await _verify(app, app.last_code(ADA), OtpPurpose.VERIFICATION)


async def test_failed_tries_are_persisted_although_the_request_fails(app: Services) -> None:
    await _register(app)
    code = app.last_code(ADA)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    for expected in (1, 2):
        with pytest.raises(OtpInvalidError):
            await _verify(app, wrong, OtpPurpose.VERIFICATION)
        async with app.uow() as uow:
            challenge = await uow.challenges.get(app.tenant.id, ADA, OtpPurpose.VERIFICATION)
        assert challenge is not None
        assert challenge.attempts == expected


async def test_five_wrong_codes_kill_the_code(app: Services) -> None:
    await _register(app)
    code = app.last_code(ADA)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(OtpInvalidError):
            await _verify(app, wrong, OtpPurpose.VERIFICATION)
    with pytest.raises(OtpInvalidError):
        await _verify(app, code, OtpPurpose.VERIFICATION)
    assert not (await _account(app)).is_verified


async def test_purposes_never_cross(app: Services) -> None:
    await app.register_verified(ADA)
    await _request(app, OtpPurpose.LOGIN)
    login_code = app.last_code(ADA)

    with pytest.raises(OtpInvalidError):
        await ResetPasswordWithCode(app.accounts)(
            ResetPassword(app.tenant, Email(ADA), login_code, NEW_PASSWORD)
        )
    with pytest.raises(OtpInvalidError):
        await _verify(app, login_code, OtpPurpose.VERIFICATION)
    # still good for its own purpose, and the password did not change
    await _verify(app, login_code, OtpPurpose.LOGIN)
    await app.log_in(ADA, PASSWORD)


async def test_a_code_of_one_tenant_is_useless_in_another(app: Services) -> None:
    other = await app.create_tenant("acme")
    await _register(app)
    code = app.last_code(ADA)
    with pytest.raises(OtpInvalidError):
        await VerifyOtp(app.accounts)(VerifyCode(other, Email(ADA), code, OtpPurpose.VERIFICATION))
    await RegisterUser(app.accounts)(Register(other, Email(ADA), PASSWORD))
    await app.issue_requested_codes()
    with pytest.raises(OtpInvalidError):
        await VerifyOtp(app.accounts)(VerifyCode(other, Email(ADA), code, OtpPurpose.VERIFICATION))
    assert (await _account(app, tenant=other)).id != (await _account(app)).id


# --- reset-password ------------------------------------------------------------


async def test_reset_password_sets_it_and_revokes_every_session(app: Services) -> None:
    first = await app.register_verified(ADA)
    second = await app.log_in(ADA)
    await _request(app, OtpPurpose.PASSWORD_RESET)
    code = app.last_code(ADA)

    await ResetPasswordWithCode(app.accounts)(
        ResetPassword(app.tenant, Email(ADA), code, NEW_PASSWORD)
    )

    for pair in (first, second):
        with pytest.raises(InvalidTokenError):
            await Authenticate(app.sessions)(app.tenant, pair.access_token)
        with pytest.raises(InvalidTokenError):
            await RefreshSession(app.sessions)(app.tenant, pair.refresh_token)
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA, PASSWORD)
    await app.log_in(ADA, NEW_PASSWORD)
    assert "password" in app.mails_to(ADA)[-1].subject
    assert not _has_code(app)


async def test_reset_password_with_a_wrong_code_changes_nothing(app: Services) -> None:
    pair = await app.register_verified(ADA)
    await _request(app, OtpPurpose.PASSWORD_RESET)
    code = app.last_code(ADA)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(OtpInvalidError):
        await ResetPasswordWithCode(app.accounts)(
            ResetPassword(app.tenant, Email(ADA), wrong, NEW_PASSWORD)
        )
    await app.log_in(ADA, PASSWORD)
    await Authenticate(app.sessions)(app.tenant, pair.access_token)


async def test_reset_password_refuses_a_weak_password_before_spending_the_code(
    app: Services,
) -> None:
    await app.register_verified(ADA)
    await _request(app, OtpPurpose.PASSWORD_RESET)
    code = app.last_code(ADA)
    with pytest.raises(WeakPasswordError):
        await ResetPasswordWithCode(app.accounts)(
            ResetPassword(app.tenant, Email(ADA), code, "short")
        )
    await ResetPasswordWithCode(app.accounts)(
        ResetPassword(app.tenant, Email(ADA), code, NEW_PASSWORD)
    )
    await app.log_in(ADA, NEW_PASSWORD)


# --- login ---------------------------------------------------------------------


async def test_login_opens_a_session(app: Services) -> None:
    await app.register_verified(ADA)
    pair = await app.log_in(ADA)
    principal = await Authenticate(app.sessions)(app.tenant, pair.access_token)
    assert principal.account.email.value == ADA


async def test_unknown_email_and_wrong_password_fail_alike(app: Services) -> None:
    await app.register_verified(ADA)
    with pytest.raises(InvalidCredentialsError) as unknown:
        await app.log_in("nobody@example.com", PASSWORD)
    with pytest.raises(InvalidCredentialsError) as wrong:
        await app.log_in(ADA, "not the password")
    assert str(unknown.value) == str(wrong.value)


async def test_unverified_is_told_only_with_the_right_password(app: Services) -> None:
    await _register(app)
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA, "not the password")
    with pytest.raises(EmailNotVerifiedError):
        await app.log_in(ADA, PASSWORD)


async def test_a_disabled_account_cannot_log_in(app: Services) -> None:
    await app.register_verified(ADA)
    await _disable(app)
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA, "not the password")
    with pytest.raises(AccountDisabledError):
        await app.log_in(ADA, PASSWORD)


async def test_login_rehashes_when_the_rounds_changed(app: Services) -> None:
    old = await make_services(
        store=app.store, clock=app.clock, tenant=app.tenant, codec=app.codec, rounds=5
    )
    await old.register_verified(ADA)
    old_hash = (await _account(app)).password_hash or ""
    assert "$05$" in old_hash
    assert app.hasher.needs_rehash(old_hash)

    await app.log_in(ADA)

    new_hash = (await _account(app)).password_hash or ""
    assert "$04$" in new_hash
    assert not app.hasher.needs_rehash(new_hash)
    await app.log_in(ADA)
    assert (await _account(app)).password_hash == new_hash


async def test_login_does_not_rehash_a_current_hash(app: Services) -> None:
    await app.register_verified(ADA)
    before = (await _account(app)).password_hash
    await app.log_in(ADA)
    assert (await _account(app)).password_hash == before


# --- rate limits ---------------------------------------------------------------


async def test_the_sixth_login_in_a_minute_is_limited_per_email(app: Services) -> None:
    await app.register_verified(ADA)
    await app.register_verified("bob@example.com")
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            await app.log_in(ADA, "not the password")

    with pytest.raises(RateLimitedError) as limited:
        await app.log_in(ADA, PASSWORD)
    assert limited.value.decision.retry_after > 0  # type: ignore[attr-defined]
    await app.log_in("bob@example.com")

    app.clock.advance(seconds=60)
    await app.log_in(ADA)


async def test_the_login_limit_counts_unknown_emails_too(app: Services) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            await app.log_in("nobody@example.com")
    with pytest.raises(RateLimitedError):
        await app.log_in("nobody@example.com")


async def test_code_requests_are_limited_per_email_and_purpose(app: Services) -> None:
    await app.register_verified(ADA)
    for _ in range(5):
        await _request(app, OtpPurpose.LOGIN)
        app.clock.advance(seconds=61)
    with pytest.raises(RateLimitedError):
        await _request(app, OtpPurpose.LOGIN)
    await _request(app, OtpPurpose.PASSWORD_RESET)
    await _request(app, OtpPurpose.LOGIN, "bob@example.com")


async def test_a_tenant_policy_override_applies(app: Services) -> None:
    strict = await app.create_tenant("strict", rate_limit_login="1/minute", otp_ttl=120)
    await RegisterUser(app.accounts)(Register(strict, Email(ADA), PASSWORD))
    await app.issue_requested_codes()
    assert "2 minutes" in app.mails_to(ADA)[-1].text
    LOGIN = LogInWithPassword(app.accounts)
    with pytest.raises(EmailNotVerifiedError):
        await LOGIN(LogIn(strict, Email(ADA), PASSWORD))
    with pytest.raises(RateLimitedError):
        await LOGIN(LogIn(strict, Email(ADA), PASSWORD))
    # the default tenant keeps the default limit for the same address
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA)


class _DisableDuringVerify:
    """The real hasher, but an admin disables the account while the hash is checked."""

    def __init__(self, app: Services) -> None:
        self._app = app

    async def hash(self, password: str) -> str:
        return await self._app.hasher.hash(password)

    async def verify(self, password: str, hashed: str) -> bool:
        result = await self._app.hasher.verify(password, hashed)
        await _disable(self._app)
        return result

    async def dummy_verify(self, password: str) -> None:
        await self._app.hasher.dummy_verify(password)

    def needs_rehash(self, hashed: str) -> bool:
        return self._app.hasher.needs_rehash(hashed)


async def test_a_login_racing_a_disable_does_not_re_enable_the_account(app: Services) -> None:
    old = await make_services(
        store=app.store, clock=app.clock, tenant=app.tenant, codec=app.codec, rounds=5
    )
    await old.register_verified(ADA)  # hashed at 5 rounds: this login rehashes
    racing = attrs.evolve(app.accounts, hasher=_DisableDuringVerify(app))

    with pytest.raises(AccountDisabledError):
        await LogInWithPassword(racing)(LogIn(app.tenant, Email(ADA), PASSWORD))
    assert not (await _account(app)).is_active


# --- the same path for every email (no timing oracle) ---------------------------------


def _committed(app: Services) -> dict[str, int]:
    """How many rows each table holds: what a request wrote."""
    return {name: len(app.store.table(name)) for name in ("accounts", "challenges", "outbox")}


async def test_register_and_request_otp_only_queue_a_request_whatever_the_email(
    app: Services,
) -> None:
    await app.register_verified(ADA)
    before = _committed(app)

    await RegisterUser(app.accounts)(Register(app.tenant, Email(ADA), None))
    await RegisterUser(app.accounts)(Register(app.tenant, Email("new@example.com"), None))
    await RequestOtp(app.accounts)(RequestCode(app.tenant, Email(ADA), OtpPurpose.LOGIN))
    await RequestOtp(app.accounts)(
        RequestCode(app.tenant, Email("nobody@example.com"), OtpPurpose.LOGIN)
    )

    # Answered: nothing account-dependent happened yet, four requests wait.
    assert _committed(app) == before
    assert len(app.store.table("code_requests")) == 4
    assert await app.issue_requested_codes() == 4
    assert len(app.store.table("code_requests")) == 0
    notice, login_code = app.mails_to(ADA)[-2:]
    assert notice.subject.startswith("Someone tried to register")
    assert code_in(login_code)
    assert _has_code(app, "new@example.com")
    assert app.mails_to("nobody@example.com") == []
    assert await app.issue_requested_codes() == 0  # each request carried out once


async def test_a_request_older_than_a_code_lives_is_dropped(app: Services) -> None:
    await app.register_verified(ADA)
    mails = len(app.mails_to(ADA))
    await RequestOtp(app.accounts)(RequestCode(app.tenant, Email(ADA), OtpPurpose.LOGIN))
    app.clock.advance(seconds=11 * 60)  # the worker was down longer than a code lives

    assert await app.issue_requested_codes() == 1
    assert len(app.mails_to(ADA)) == mails


async def test_a_failed_check_writes_the_same_for_known_and_unknown_emails(
    app: Services,
) -> None:
    await _register(app)
    code = app.last_code(ADA)

    for email in (ADA, "nobody@example.com"):
        with pytest.raises(OtpInvalidError):
            await _verify(app, f"{(int(code) + 1) % 10**6:06d}", OtpPurpose.VERIFICATION, email)
    async with app.uow() as uow:
        known = await uow.challenges.get(app.tenant.id, Email(ADA).key, OtpPurpose.VERIFICATION)
        unknown = await uow.challenges.get(
            app.tenant.id, Email("nobody@example.com").key, OtpPurpose.VERIFICATION
        )
    assert known is not None and known.attempts == 1 and known.is_usable(app.clock.now())
    # The unknown email got a dead placeholder: it matches no code...
    assert unknown is not None and not unknown.is_usable(app.clock.now())
    with pytest.raises(OtpInvalidError):
        await _verify(app, "", OtpPurpose.VERIFICATION, "nobody@example.com")
    # ...and the real code still works.
    assert (await _verify(app, code, OtpPurpose.VERIFICATION)).account.is_verified


async def test_a_placeholder_never_blocks_a_real_code(app: Services) -> None:
    await app.register_verified(ADA)
    with pytest.raises(OtpInvalidError):
        await _verify(app, "123456", OtpPurpose.LOGIN)  # no login code yet: a placeholder

    await _request(app, OtpPurpose.LOGIN)

    assert (await _verify(app, app.last_code(ADA), OtpPurpose.LOGIN)).account.email.value == ADA
