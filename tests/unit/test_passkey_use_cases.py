"""The passkey use cases on the in-memory store, with py_webauthn behind the port and a
software authenticator making what a browser would post back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from identity.adapters.webauthn import PyWebAuthnCeremonies
from identity.application.external_sign_in import ExternalSignInServices, UnlinkIdentity
from identity.application.mail_templates import MailTemplates
from identity.application.passkeys import (
    AdminDeletePasskey,
    DeletePasskey,
    FinishLogin,
    FinishPasskeyLogin,
    FinishPasskeyRegistration,
    FinishRegistration,
    ListPasskeys,
    PasskeyServices,
    RenamePasskey,
    StartLogin,
    StartPasskeyLogin,
    StartPasskeyRegistration,
)
from identity.application.ports import UnitOfWork
from identity.application.sessions import Principal
from identity.application.throttle import Throttle
from identity.application.tokens import SessionTokens
from identity.application.webauthn_keys import WebAuthnKeys
from identity.domain.emails import Email
from identity.domain.errors import AccountDisabledError, LastSignInMethodError
from identity.domain.events import EventType
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.mfa import MfaRequiredError
from identity.domain.passkeys import (
    PasskeyExistsError,
    PasskeyNotFoundError,
    SignCountRegressedError,
    UnknownPasskeyError,
    WebAuthnInvalidError,
)
from identity.domain.ratelimits import parse_rate_limit
from tests.authenticator import SoftwareAuthenticator, b64url, unb64url
from tests.fakes import SECRET_KEY, SENDER, Services, default_policy, make_services

EMAIL = "ada@example.com"
RP_ID = "id.example.test"
ORIGIN = "https://id.example.test"


@pytest.fixture
async def s() -> Services:
    return await make_services(
        policy=default_policy(
            rate_limit_login=parse_rate_limit("1000/minute"),
            webauthn_rp_id=RP_ID,
            webauthn_origins=(ORIGIN,),
        )
    )


def passkeys(s: Services) -> PasskeyServices:
    return PasskeyServices(
        uow=s.accounts.uow,
        clock=s.clock,
        ceremonies=PyWebAuthnCeremonies(),
        keys=WebAuthnKeys(SECRET_KEY),
        tokens=SessionTokens(s.codec, s.clock),
        throttle=Throttle(s.limiter),
        templates=MailTemplates(SENDER),
        policy=s.policy,
    )


async def register(
    s: Services, principal: Principal, authenticator: SoftwareAuthenticator, **knobs: Any
) -> Any:
    p = passkeys(s)
    flow = await StartPasskeyRegistration(p)(principal)
    credential = authenticator.create(dict(flow.public_key), **knobs)
    return await FinishPasskeyRegistration(p)(
        FinishRegistration(principal, flow.flow_id, credential)
    )


async def log_in(
    s: Services, authenticator: SoftwareAuthenticator, email: str | None = None, **knobs: Any
) -> Any:
    p = passkeys(s)
    flow = await StartPasskeyLogin(p)(StartLogin(s.tenant, Email(email) if email else None))
    credential = authenticator.get(dict(flow.public_key), **knobs)
    return await FinishPasskeyLogin(p)(FinishLogin(s.tenant, flow.flow_id, credential))


async def signed_up(s: Services, email: str = EMAIL) -> Principal:
    return await s.principal(await s.register_verified(email))


async def events(s: Services, type: EventType) -> list[Any]:
    async with s.uow() as uow:
        return [e for e in await uow.events.list(s.tenant.id, limit=100) if e.type == type]


async def test_register_then_sign_in_is_aal2_with_swk_or_hwk(s: Services) -> None:
    principal = await signed_up(s)
    synced = SoftwareAuthenticator(ORIGIN)
    passkey = await register(s, principal, synced)
    assert passkey.name.startswith("Passkey") and passkey.transports == ("internal", "hybrid")
    assert passkey.backed_up and passkey.backup_eligible

    pair = await log_in(s, synced)

    claims = s.codec.decode_access(pair.access_token)
    assert (claims.aal, claims.amr) == ("aal2", ("swk", "user"))
    bound = SoftwareAuthenticator(ORIGIN, algorithm="EdDSA")
    await register(s, principal, bound, backup_eligible=False, backed_up=False)
    claims = s.codec.decode_access((await log_in(s, bound, EMAIL)).access_token)
    assert (claims.aal, claims.amr) == ("aal2", ("hwk", "user"))
    succeeded = [
        e for e in await events(s, EventType.LOGIN_SUCCEEDED) if e.data["method"] == "passkey"
    ]
    assert len(succeeded) == 2 and all(e.data["aal"] == "aal2" for e in succeeded)
    assert [e.data["passkey_id"] for e in await events(s, EventType.PASSKEY_ADDED)]
    notices = [m for m in s.mails_to(EMAIL) if "passkey" in m.subject]
    assert len(notices) == 2 and passkey.name in notices[0].text


async def test_creation_options_carry_the_account_user_handle_never_its_email(
    s: Services,
) -> None:
    principal = await signed_up(s)
    p = passkeys(s)
    first = dict((await StartPasskeyRegistration(p)(principal)).public_key)
    second = dict((await StartPasskeyRegistration(p)(principal)).public_key)

    user: dict[str, Any] = first["user"]  # type: ignore[assignment]
    handle = unb64url(user["id"])
    assert len(handle) == 32 and second["user"] == user
    assert EMAIL.encode() not in handle and principal.account.id.bytes not in handle
    assert first["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    }
    assert [param["alg"] for param in first["pubKeyCredParams"]] == [-7, -8, -257]  # type: ignore[attr-defined]
    assert first["timeout"] == 300000 and first["attestation"] == "none"
    assert first["rp"] == {"id": RP_ID, "name": "Default"}


async def test_a_flow_is_spent_by_its_first_verify_even_a_failed_one(s: Services) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    p = passkeys(s)
    flow = await StartPasskeyRegistration(p)(principal)
    bad = authenticator.create(dict(flow.public_key), origin="https://evil.test")
    with pytest.raises(WebAuthnInvalidError):
        await FinishPasskeyRegistration(p)(FinishRegistration(principal, flow.flow_id, bad))
    good = authenticator.create(dict(flow.public_key))
    with pytest.raises(WebAuthnInvalidError):
        await FinishPasskeyRegistration(p)(FinishRegistration(principal, flow.flow_id, good))


@pytest.mark.parametrize(
    "knobs",
    [
        {"origin": "https://evil.test"},
        {"rp_id": "evil.test"},
        {"up": False},
        {"uv": False},
        {"kind": "webauthn.get"},
        {"challenge": "AAAAAAAAAAAAAAAAAAAAAA"},
        {"cross_origin": True},
    ],
)
async def test_registration_checks_refuse(s: Services, knobs: dict[str, Any]) -> None:
    principal = await signed_up(s)
    with pytest.raises(WebAuthnInvalidError):
        await register(s, principal, SoftwareAuthenticator(ORIGIN), **knobs)


async def test_a_credential_registers_once_per_tenant(s: Services) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, authenticator, credential_id=b"c" * 32)
    other = await signed_up(s, "bob@example.com")
    with pytest.raises(PasskeyExistsError):
        await register(s, other, authenticator, credential_id=b"c" * 32)


@pytest.mark.parametrize(
    "knobs",
    [
        {"origin": "https://evil.test"},
        {"rp_id": "evil.test"},
        {"up": False},
        {"uv": False},
        {"kind": "webauthn.create"},
        {"cross_origin": True},
        {"user_handle": b"someone else"},
    ],
)
async def test_login_checks_refuse_and_record(s: Services, knobs: dict[str, Any]) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, authenticator)

    with pytest.raises(WebAuthnInvalidError):
        await log_in(s, authenticator, **knobs)

    (failed,) = await events(s, EventType.LOGIN_FAILED)
    assert failed.data["method"] == "passkey" and failed.user_id == principal.account.id


async def test_a_regressed_counter_is_refused_recorded_and_the_passkey_stays(
    s: Services,
) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await register(s, principal, authenticator)
    await log_in(s, authenticator, sign_count=10)

    with pytest.raises(SignCountRegressedError):
        await log_in(s, authenticator, sign_count=10)  # a clone at the same count

    (regressed,) = await events(s, EventType.PASSKEY_SIGN_COUNT_REGRESSED)
    assert regressed.data["passkey_id"] == str(passkey.id)
    assert [k.id for k in await ListPasskeys(passkeys(s))(principal)] == [passkey.id]
    await log_in(s, authenticator, sign_count=11)


async def test_a_successful_login_records_counter_backup_state_and_last_use(
    s: Services,
) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, authenticator)
    s.clock.advance(seconds=60)

    await log_in(s, authenticator, sign_count=3, backed_up=False)

    (stored,) = await ListPasskeys(passkeys(s))(principal)
    assert (stored.sign_count, stored.backed_up, stored.last_used_at) == (3, False, s.clock.now())


async def test_email_first_login_lists_the_accounts_passkeys_and_nobody_elses(
    s: Services,
) -> None:
    principal = await signed_up(s)
    mine = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, mine)
    bob = await signed_up(s, "bob@example.com")
    bobs = SoftwareAuthenticator(ORIGIN)
    await register(s, bob, bobs)
    p = passkeys(s)

    flow = await StartPasskeyLogin(p)(StartLogin(s.tenant, Email(EMAIL)))
    allowed = [d["id"] for d in flow.public_key["allowCredentials"]]  # type: ignore[attr-defined]
    assert allowed == [b64url(mine.credentials[0].credential_id)]
    # Bob's passkey cannot finish Ada's email-first flow.
    with pytest.raises(WebAuthnInvalidError):
        await FinishPasskeyLogin(p)(
            FinishLogin(s.tenant, flow.flow_id, bobs.get(dict(flow.public_key)))
        )
    assert "user" not in flow.public_key and EMAIL not in str(flow.public_key)


async def test_decoys_are_stable_shaped_like_real_ones_and_refused_with_400(
    s: Services,
) -> None:
    p = passkeys(s)
    start = StartPasskeyLogin(p)
    first = await start(StartLogin(s.tenant, Email("nobody@example.com")))
    again = await start(StartLogin(s.tenant, Email("NOBODY@example.com")))
    other = await start(StartLogin(s.tenant, Email("someone@example.com")))
    decoys: Any = first.public_key["allowCredentials"]

    assert 1 <= len(decoys) <= 3
    assert decoys == again.public_key["allowCredentials"]
    assert decoys != other.public_key["allowCredentials"]
    assert all(set(d) == {"id", "type", "transports"} for d in decoys)
    # Someone tries one of the decoys: a failed assertion, not an unknown credential.
    authenticator = SoftwareAuthenticator(ORIGIN)
    principal = await signed_up(s)
    await register(s, principal, authenticator)
    credential = authenticator.get(dict(first.public_key))
    credential["id"] = credential["rawId"] = decoys[0]["id"]
    with pytest.raises(WebAuthnInvalidError):
        await FinishPasskeyLogin(p)(FinishLogin(s.tenant, first.flow_id, credential))


async def test_an_account_without_passkeys_gets_decoys_too(s: Services) -> None:
    await signed_up(s)
    flow = await StartPasskeyLogin(passkeys(s))(StartLogin(s.tenant, Email(EMAIL)))
    keys = WebAuthnKeys(SECRET_KEY)
    allowed: Any = flow.public_key["allowCredentials"]
    assert all(keys.is_decoy(s.tenant.id, unb64url(d["id"])) for d in allowed)


async def test_an_unknown_or_deleted_credential_is_not_found(s: Services) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await register(s, principal, authenticator)
    await s.register_verified("spare@example.com")  # irrelevant account
    await RenamePasskey(passkeys(s))(principal, passkey.id, "  Laptop  ")
    # A password remains, so the last passkey may go.
    await DeletePasskey(passkeys(s))(principal, passkey.id)

    with pytest.raises(PasskeyNotFoundError):
        await log_in(s, authenticator)


async def test_another_tenants_credential_is_unknown_here(s: Services) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, authenticator)
    other = await s.create_tenant("globex")
    p = passkeys(s)

    flow = await StartPasskeyLogin(p)(StartLogin(other))
    with pytest.raises(PasskeyNotFoundError):
        await FinishPasskeyLogin(p)(
            FinishLogin(other, flow.flow_id, authenticator.get(dict(flow.public_key)))
        )


async def test_a_disabled_account_is_refused_after_a_valid_assertion(s: Services) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await register(s, principal, authenticator)
    async with s.uow() as uow:
        account = await uow.accounts.get(s.tenant.id, principal.account.id)
        assert account is not None
        account.disable(s.clock.now())
        await uow.accounts.update(account)
        await uow.commit()

    with pytest.raises(AccountDisabledError):
        await log_in(s, authenticator)


async def test_rename_and_delete_refuse_someone_elses_passkey(s: Services) -> None:
    principal = await signed_up(s)
    passkey = await register(s, principal, SoftwareAuthenticator(ORIGIN))
    bob = await signed_up(s, "bob@example.com")
    p = passkeys(s)

    with pytest.raises(UnknownPasskeyError):
        await RenamePasskey(p)(bob, passkey.id, "mine now")
    with pytest.raises(UnknownPasskeyError):
        await DeletePasskey(p)(bob, passkey.id)
    with pytest.raises(UnknownPasskeyError):
        await DeletePasskey(p)(principal, uuid.uuid4())


async def add_link(s: Services, principal: Principal, provider: str = "github") -> None:
    async with s.uow() as uow:
        await uow.external_identities.add(
            LinkedIdentity(
                id=uuid.uuid4(),
                tenant_id=s.tenant.id,
                user_id=principal.account.id,
                provider=provider,
                subject="42",
                email_at_link=EMAIL,
                created_at=s.clock.now(),
            )
        )
        await uow.commit()


async def test_one_rule_for_the_last_sign_in_method_across_passkeys_and_identities(
    s: Services,
) -> None:
    principal = await s.principal(await s.register_verified(EMAIL, None))  # code-only account
    first = await register(s, principal, SoftwareAuthenticator(ORIGIN))
    second = await register(s, principal, SoftwareAuthenticator(ORIGIN))
    p = passkeys(s)

    await DeletePasskey(p)(principal, first.id)
    with pytest.raises(LastSignInMethodError):
        await DeletePasskey(p)(principal, second.id)
    # A linked identity counts; and with a passkey left, the identity may go.
    await add_link(s, principal)
    unlink = UnlinkIdentity(_external(s))
    await unlink(s.tenant, principal.account.id, "github")
    await add_link(s, principal)
    await DeletePasskey(p)(principal, second.id)
    with pytest.raises(LastSignInMethodError):
        await unlink(s.tenant, principal.account.id, "github")
    # The administrator is not bound by the rule (the emailed code still signs in).
    third = await register(s, principal, SoftwareAuthenticator(ORIGIN))
    await AdminDeletePasskey(p)(s.tenant, principal.account.id, third.id)
    removed = await events(s, EventType.PASSKEY_REMOVED)
    assert sorted(e.data["by"] for e in removed) == ["admin", "user", "user"]


def _external(s: Services) -> ExternalSignInServices:
    return ExternalSignInServices(
        uow=s.accounts.uow,
        clock=s.clock,
        providers={},
        tokens=s.accounts.tokens,
        policy=s.policy,
        normalise_email=Email,
    )


async def mfa_on(s: Services, principal: Principal) -> None:
    async with s.uow() as uow:
        account = await uow.accounts.get(s.tenant.id, principal.account.id)
        assert account is not None
        account.mfa_enabled = True
        await uow.accounts.update(account)
        await uow.commit()


async def test_with_mfa_on_a_passkey_sign_in_answers_tokens_and_managing_needs_aal2(
    s: Services,
) -> None:
    principal = await signed_up(s)
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await register(s, principal, authenticator)
    await mfa_on(s, principal)

    with pytest.raises(MfaRequiredError):
        await StartPasskeyRegistration(passkeys(s))(principal)
    with pytest.raises(MfaRequiredError):
        await DeletePasskey(passkeys(s))(principal, passkey.id)
    pair = await log_in(s, authenticator)  # no mfa_required: the passkey is aal2
    strong = await s.principal(pair)
    await register(s, strong, SoftwareAuthenticator(ORIGIN))
    await DeletePasskey(passkeys(s))(strong, passkey.id)


async def test_erasing_the_account_erases_its_passkeys(s: Services) -> None:
    principal = await signed_up(s)
    await register(s, principal, SoftwareAuthenticator(ORIGIN))

    async def count(uow: UnitOfWork) -> int:
        return await uow.passkeys.count_for_account(s.tenant.id, principal.account.id)

    async with s.uow() as uow:
        assert await uow.accounts.delete(s.tenant.id, principal.account.id)
        await uow.commit()
    async with s.uow() as uow:
        assert await count(uow) == 0


async def test_expired_flows_are_purged_with_the_other_expired_rows(s: Services) -> None:
    from identity.application.mail_delivery import PurgeExpired

    principal = await signed_up(s)
    p = passkeys(s)
    await StartPasskeyRegistration(p)(principal)
    await StartPasskeyLogin(p)(StartLogin(s.tenant))
    assert (await PurgeExpired(s.accounts.uow, s.clock)() or {})["webauthn_flows"] == 0
    s.clock.advance(seconds=301)

    counts = await PurgeExpired(s.accounts.uow, s.clock)()

    assert counts is not None and counts["webauthn_flows"] == 2
