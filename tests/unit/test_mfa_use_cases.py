"""The MFA use cases on the in-memory store, with a clock moved by hand."""

from __future__ import annotations

import asyncio
import re

import pyotp
import pytest

from identity.application.accounts import RequestCode, RequestOtp, VerifyCode, VerifyOtp
from identity.application.first_factor import MfaRequired
from identity.application.mfa import (
    ConfirmTotp,
    DisableTotp,
    EnrollTotp,
    RenewRecoveryCodes,
    ResetMfa,
    SecondFactorProof,
    StepUp,
    VerifyMfa,
    VerifySecondFactor,
)
from identity.application.recovery_codes import normalise_recovery_code
from identity.application.sessions import (
    ChangePassword,
    ChangePasswordCommand,
    Principal,
    RefreshSession,
)
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.emails import Email
from identity.domain.errors import InvalidTokenError, RateLimitedError
from identity.domain.mfa import (
    MfaAlreadyEnabledError,
    MfaInvalidError,
    MfaNotEnabledError,
    MfaRequiredError,
)
from identity.domain.otp import OtpPurpose
from identity.domain.ratelimits import parse_rate_limit
from tests.fakes import PASSWORD, Services, default_policy, make_services

EMAIL = "ada@example.com"
BROWSER = ClientInfo(user_agent="browser/1.0", ip="192.0.2.1")
RECOVERY_FORM = re.compile(r"^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$")


async def _services(**policy: object) -> Services:
    s = await make_services(policy=default_policy(**policy))
    # Midway through a 30 s step, so one step of drift either way is a clear case.
    s.clock.advance(seconds=(15 - s.clock.now().timestamp() % 30) % 30)
    return s


@pytest.fixture
async def services() -> Services:
    # Room for many wrong codes: the per-account limit has a test of its own.
    return await _services(rate_limit_login=parse_rate_limit("1000/minute"))


def code_at(secret: str, s: Services, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(s.clock.now(), counter_offset=steps)


async def enable_mfa(s: Services, email: str = EMAIL) -> tuple[TokenPair, str, tuple[str, ...]]:
    """A verified, logged-in account with MFA on: (its first pair, the secret, recovery codes)."""
    pair = await s.register_verified(email)
    principal = await s.principal(pair)
    enrollment = await EnrollTotp(s.mfa)(principal)
    codes = await ConfirmTotp(s.mfa)(principal, code_at(enrollment.secret, s))
    s.clock.advance(seconds=30)  # the confirming code's step is spent
    return pair, enrollment.secret, codes.codes


async def mfa_token(s: Services, email: str = EMAIL) -> str:
    result = await s.sign_in(email, client=BROWSER)
    assert isinstance(result, MfaRequired)
    return result.mfa_token


async def verify(s: Services, token: str, **proof: str) -> TokenPair:
    return await VerifyMfa(s.mfa)(
        VerifySecondFactor(s.tenant, token, SecondFactorProof(**proof), BROWSER)
    )


async def session_of(s: Services, principal: Principal) -> tuple[str, tuple[str, ...]]:
    async with s.uow() as uow:
        session = await uow.sessions.get(s.tenant.id, principal.session_id)
    assert session is not None
    return session.aal, session.amr


async def test_confirming_turns_mfa_on_with_ten_recovery_codes(services: Services) -> None:
    s = services
    pair = await s.register_verified(EMAIL)
    principal = await s.principal(pair)
    enrollment = await EnrollTotp(s.mfa)(principal)
    assert enrollment.otpauth_uri.startswith("otpauth://totp/")
    assert enrollment.secret in enrollment.otpauth_uri
    with pytest.raises(MfaInvalidError):
        await ConfirmTotp(s.mfa)(principal, code_at(enrollment.secret, s, steps=3))
    codes = await ConfirmTotp(s.mfa)(principal, code_at(enrollment.secret, s))

    assert len(codes.codes) == 10 and len(set(codes.codes)) == 10
    assert all(RECOVERY_FORM.match(code) for code in codes.codes)
    assert (await s.principal(pair)).account.mfa_enabled
    assert await session_of(s, principal) == ("aal2", ("otp", "totp"))
    with pytest.raises(MfaAlreadyEnabledError):
        await EnrollTotp(s.mfa)(principal)


async def test_a_new_enrolment_replaces_a_pending_one(services: Services) -> None:
    s = services
    principal = await s.principal(await s.register_verified(EMAIL))
    first = await EnrollTotp(s.mfa)(principal)
    second = await EnrollTotp(s.mfa)(principal)
    assert first.secret != second.secret
    with pytest.raises(MfaInvalidError):
        await ConfirmTotp(s.mfa)(principal, code_at(first.secret, s))
    await ConfirmTotp(s.mfa)(principal, code_at(second.secret, s))


async def test_password_login_with_mfa_asks_for_the_second_factor(services: Services) -> None:
    s = services
    await enable_mfa(s)
    result = await s.sign_in(EMAIL, client=BROWSER)

    assert isinstance(result, MfaRequired)
    assert result.methods == ("totp", "recovery_code")
    assert result.expires_in == 300
    assert len(result.mfa_token) >= 40


async def test_verify_gives_an_aal2_session_and_the_token_is_single_use(
    services: Services,
) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    token = await mfa_token(s)
    pair = await verify(s, token, code=code_at(secret, s))

    claims = s.codec.decode_access(pair.access_token)
    assert (claims.aal, claims.amr) == ("aal2", ("pwd", "totp"))
    s.clock.advance(seconds=30)
    with pytest.raises(InvalidTokenError):
        await verify(s, token, code=code_at(secret, s))
    # A refresh keeps the session's assurance.
    refreshed = await RefreshSession(s.sessions)(s.tenant, pair.refresh_token)
    again = s.codec.decode_access(refreshed.access_token)
    assert (again.aal, again.amr) == ("aal2", ("pwd", "totp"))


async def test_one_step_of_drift_each_way_and_no_more(services: Services) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    s.clock.advance(seconds=30)  # the previous step was never used
    for steps, accepted in ((-2, False), (2, False), (-1, True)):
        token = await mfa_token(s)
        if accepted:
            await verify(s, token, code=code_at(secret, s, steps))
        else:
            with pytest.raises(MfaInvalidError):
                await verify(s, token, code=code_at(secret, s, steps))
    await verify(s, await mfa_token(s), code=code_at(secret, s, 1))


async def test_an_accepted_code_and_older_ones_are_refused(services: Services) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    code = code_at(secret, s)
    await verify(s, await mfa_token(s), code=code)
    with pytest.raises(MfaInvalidError):
        await verify(s, await mfa_token(s), code=code)
    # Still inside the drift window, but older than the accepted step.
    with pytest.raises(MfaInvalidError):
        await verify(s, await mfa_token(s), code=code_at(secret, s, -1))
    s.clock.advance(seconds=30)
    await verify(s, await mfa_token(s), code=code_at(secret, s))


async def test_five_wrong_codes_kill_the_token(services: Services) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    token = await mfa_token(s)
    wrong = f"{(int(code_at(secret, s)) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(MfaInvalidError):
            await verify(s, token, code=wrong)
    with pytest.raises(InvalidTokenError):
        await verify(s, token, code=code_at(secret, s))


async def test_the_token_lives_five_minutes_and_belongs_to_its_client(
    services: Services,
) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    token = await mfa_token(s)
    with pytest.raises(InvalidTokenError):
        await VerifyMfa(s.mfa)(
            VerifySecondFactor(
                s.tenant, token, SecondFactorProof(code=code_at(secret, s)), ClientInfo("other")
            )
        )
    s.clock.advance(seconds=300)
    with pytest.raises(InvalidTokenError):
        await verify(s, token, code=code_at(secret, s))


async def test_a_token_of_one_tenant_is_unknown_in_another(services: Services) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    token = await mfa_token(s)
    other = await s.create_tenant("other")
    with pytest.raises(InvalidTokenError):
        await VerifyMfa(s.mfa)(
            VerifySecondFactor(other, token, SecondFactorProof(code=code_at(secret, s)), BROWSER)
        )
    await verify(s, token, code=code_at(secret, s))


async def test_recovery_codes_are_single_use_and_a_new_set_kills_the_old(
    services: Services,
) -> None:
    s = services
    _, _, codes = await enable_mfa(s)
    pair = await verify(s, await mfa_token(s), recovery_code=codes[0].upper().replace("-", " "))
    assert s.codec.decode_access(pair.access_token).amr == ("pwd", "recovery")
    with pytest.raises(MfaInvalidError):
        await verify(s, await mfa_token(s), recovery_code=codes[0])

    renewed = await RenewRecoveryCodes(s.mfa)(await s.principal(pair))
    assert not set(renewed.codes) & set(codes)
    with pytest.raises(MfaInvalidError):
        await verify(s, await mfa_token(s), recovery_code=codes[1])
    await verify(s, await mfa_token(s), recovery_code=renewed.codes[1])


def test_recovery_codes_are_read_leniently_but_strictly_formed() -> None:
    assert normalise_recovery_code(" ABCD-efgh-JKMN ") == "abcdefghjkmn"
    assert normalise_recovery_code("abcd efgh jkmn") == "abcdefghjkmn"
    for bad in ("123456", "abcd-efgh-jkm", "abcd-efgh-jkm0", "abcd-efgh-jkmn-p", ""):
        assert normalise_recovery_code(bad) is None


async def test_other_sessions_stay_aal1_and_step_up_raises_the_session(
    services: Services,
) -> None:
    s = services
    pair = await s.register_verified(EMAIL)
    laptop = await s.log_in(EMAIL)
    principal = await s.principal(pair)
    enrollment = await EnrollTotp(s.mfa)(principal)
    codes = await ConfirmTotp(s.mfa)(principal, code_at(enrollment.secret, s))
    s.clock.advance(seconds=30)

    laptop_principal = await s.principal(laptop)
    assert await session_of(s, laptop_principal) == ("aal1", ("pwd",))
    with pytest.raises(MfaRequiredError):
        await RenewRecoveryCodes(s.mfa)(laptop_principal)
    with pytest.raises(MfaRequiredError):
        await ChangePassword(s.sessions)(
            ChangePasswordCommand(laptop_principal, PASSWORD, "a brand new passphrase 42")
        )
    with pytest.raises(MfaInvalidError):
        await StepUp(s.mfa)(laptop_principal, SecondFactorProof(recovery_code="aaaa-bbbb-cccc"))

    stepped = await StepUp(s.mfa)(laptop_principal, SecondFactorProof(recovery_code=codes.codes[0]))
    assert stepped.refresh_token == laptop.refresh_token  # the same session
    assert s.codec.decode_access(stepped.access_token).aal == "aal2"
    assert await session_of(s, laptop_principal) == ("aal2", ("pwd", "recovery"))
    await ChangePassword(s.sessions)(
        ChangePasswordCommand(laptop_principal, PASSWORD, "a brand new passphrase 42")
    )


async def test_step_up_without_mfa_is_refused(services: Services) -> None:
    s = services
    principal = await s.principal(await s.register_verified(EMAIL))
    with pytest.raises(MfaNotEnabledError):
        await StepUp(s.mfa)(principal, SecondFactorProof(code="123456"))


async def test_disabling_needs_aal2_and_a_code_and_ends_other_sessions(
    services: Services,
) -> None:
    s = services
    pair, secret, codes = await enable_mfa(s)
    phone = await verify(s, await mfa_token(s), recovery_code=codes[0])
    s.clock.advance(seconds=30)
    aal1 = await s.principal(await s.register_verified("bob@example.com"))
    assert not aal1.account.mfa_enabled
    principal = await s.principal(pair)

    with pytest.raises(MfaInvalidError):
        await DisableTotp(s.mfa)(principal, code_at(secret, s, 5))
    await DisableTotp(s.mfa)(principal, code_at(secret, s))

    assert not (await s.principal(pair)).account.mfa_enabled
    with pytest.raises(InvalidTokenError):
        await s.principal(phone)
    assert isinstance(await s.sign_in(EMAIL), TokenPair)
    async with s.uow() as uow:
        assert await uow.totp_factors.get(s.tenant.id, principal.account.id) is None
        assert await uow.recovery_codes.count_unused(s.tenant.id, principal.account.id) == 0


async def test_the_admin_reset_removes_every_factor(services: Services) -> None:
    s = services
    pair, _, _ = await enable_mfa(s)
    account = await ResetMfa(s.mfa)(s.tenant, (await s.principal(pair)).account.id)
    assert not account.mfa_enabled
    assert isinstance(await s.sign_in(EMAIL), TokenPair)
    with pytest.raises(InvalidTokenError):
        await s.principal(pair)  # every session ended with the factor


async def test_concurrent_submissions_of_one_code_give_one_success(services: Services) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    tokens = [await mfa_token(s) for _ in range(4)]
    code = code_at(secret, s)
    outcomes = await asyncio.gather(
        *(verify(s, token, code=code) for token in tokens), return_exceptions=True
    )
    assert sum(isinstance(outcome, TokenPair) for outcome in outcomes) == 1
    assert all(isinstance(outcome, TokenPair | MfaInvalidError) for outcome in outcomes), outcomes


async def test_login_with_an_emailed_code_also_asks_for_the_second_factor(
    services: Services,
) -> None:
    s = services
    _, secret, _ = await enable_mfa(s)
    await RequestOtp(s.accounts)(RequestCode(s.tenant, Email(EMAIL), OtpPurpose.LOGIN))
    await s.issue_requested_codes()  # the server's background worker
    result = await VerifyOtp(s.accounts)(
        VerifyCode(s.tenant, Email(EMAIL), s.last_code(EMAIL), OtpPurpose.LOGIN, BROWSER)
    )
    assert isinstance(result, MfaRequired)
    pair = await verify(s, result.mfa_token, code=code_at(secret, s))
    assert s.codec.decode_access(pair.access_token).amr == ("otp", "totp")


async def test_wrong_codes_count_against_the_login_limit_per_account() -> None:
    s = await _services()
    _, secret, _ = await enable_mfa(s)
    tokens = [await mfa_token(s) for _ in range(2)]
    # The login limit is 5/minute per account: the confirmation spent one.
    for attempt in range(4):
        with pytest.raises(MfaInvalidError):
            await verify(s, tokens[attempt % 2], code=code_at(secret, s, 7))
    with pytest.raises(RateLimitedError):
        await verify(s, tokens[1], code=code_at(secret, s))
