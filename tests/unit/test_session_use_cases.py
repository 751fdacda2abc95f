import asyncio
import uuid

import pytest

from identity.application.sessions import (
    Authenticate,
    ChangePassword,
    ChangePasswordCommand,
    ListSessions,
    LogOut,
    LogOutEverywhere,
    RefreshSession,
    RevokeSession,
)
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.errors import (
    AccountDisabledError,
    InvalidCredentialsError,
    InvalidTokenError,
    RefreshTokenReusedError,
    SessionNotFoundError,
    WeakPasswordError,
)
from identity.domain.sessions import Session
from identity.domain.tokens import AccessClaims
from tests.fakes import PASSWORD, Services, make_services

ADA = "ada@example.com"
BOB = "bob@example.com"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def app() -> Services:
    return await make_services()


async def _refresh(app: Services, pair: TokenPair) -> TokenPair:
    return await RefreshSession(app.sessions)(app.tenant, pair.refresh_token)


async def _session(app: Services, pair: TokenPair) -> Session:
    claims = app.codec.decode_refresh(pair.refresh_token)
    async with app.uow() as uow:
        session = await uow.sessions.get(pair.tenant.id, claims.session_id)
    assert session is not None
    return session


async def _is_live(app: Services, pair: TokenPair) -> bool:
    try:
        await Authenticate(app.sessions)(pair.tenant, pair.access_token)
    except InvalidTokenError:
        return False
    return True


# --- authenticate --------------------------------------------------------------


async def test_authenticate_returns_the_principal_of_a_live_session(app: Services) -> None:
    pair = await app.register_verified(ADA)
    principal = await Authenticate(app.sessions)(app.tenant, pair.access_token)
    assert principal.account.email.value == ADA
    assert principal.tenant == app.tenant
    assert principal.session_id == (await _session(app, pair)).id


async def test_a_refresh_token_is_not_an_access_token(app: Services) -> None:
    pair = await app.register_verified(ADA)
    with pytest.raises(InvalidTokenError):
        await Authenticate(app.sessions)(app.tenant, pair.refresh_token)
    with pytest.raises(InvalidTokenError):
        await RefreshSession(app.sessions)(app.tenant, pair.access_token)


async def test_a_token_of_another_tenant_is_refused(app: Services) -> None:
    acme = await app.create_tenant("acme")
    pair = await app.register_verified(ADA, tenant=acme)
    assert await _is_live(app, pair)

    with pytest.raises(InvalidTokenError):
        await Authenticate(app.sessions)(app.tenant, pair.access_token)
    with pytest.raises(InvalidTokenError):
        await RefreshSession(app.sessions)(app.tenant, pair.refresh_token)
    with pytest.raises(InvalidTokenError):
        await LogOut(app.sessions)(app.tenant, pair.refresh_token)
    assert await _is_live(app, pair)


async def test_a_forged_tid_cannot_reach_another_tenants_session(app: Services) -> None:
    acme = await app.create_tenant("acme")
    victim = await app.register_verified(ADA, tenant=acme)
    claims = app.codec.decode_access(victim.access_token)
    # A token signed by us, naming the default tenant but acme's session and user.
    forged = app.codec.encode_access(
        AccessClaims(
            subject=claims.subject,
            session_id=claims.session_id,
            tenant_id=app.tenant.id,
            token_id="forged",
            email=ADA,
            email_verified=True,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )
    )
    with pytest.raises(InvalidTokenError):
        await Authenticate(app.sessions)(app.tenant, forged)


async def test_a_disabled_account_is_no_longer_authenticated(app: Services) -> None:
    pair = await app.register_verified(ADA)
    async with app.uow() as uow:
        account = await uow.accounts.get(app.tenant.id, pair.account.id)
        assert account is not None
        account.disable(app.clock.now())
        await uow.accounts.update(account)
        await uow.commit()
    assert not await _is_live(app, pair)
    with pytest.raises(AccountDisabledError):
        await _refresh(app, pair)


# --- refresh -------------------------------------------------------------------


async def test_refresh_rotates_the_token(app: Services) -> None:
    pair = await app.register_verified(ADA)
    app.clock.advance(seconds=60)
    new = await _refresh(app, pair)

    old_claims = app.codec.decode_refresh(pair.refresh_token)
    new_claims = app.codec.decode_refresh(new.refresh_token)
    assert new.refresh_token != pair.refresh_token
    assert new_claims.session_id == old_claims.session_id
    assert new_claims.token_id != old_claims.token_id
    session = await _session(app, new)
    assert session.refresh_jti == new_claims.token_id
    assert session.previous_refresh_jti == old_claims.token_id
    assert session.rotated_at == app.clock.now()
    assert await _is_live(app, new)
    # The newest token rotates in turn.
    newer = await _refresh(app, new)
    assert app.codec.decode_refresh(newer.refresh_token).token_id != new_claims.token_id


async def test_within_the_grace_window_the_spent_token_gets_the_same_successor(
    app: Services,
) -> None:
    pair = await app.register_verified(ADA)
    first = await _refresh(app, pair)
    app.clock.advance(seconds=10)
    second = await _refresh(app, pair)

    assert second.refresh_token == first.refresh_token
    assert await _is_live(app, second)
    assert (await _session(app, first)).refresh_jti == (
        app.codec.decode_refresh(first.refresh_token).token_id
    )


async def test_reuse_after_grace_revokes_the_whole_family(app: Services) -> None:
    pair = await app.register_verified(ADA)
    newest = await _refresh(app, pair)
    app.clock.advance(seconds=11)

    with pytest.raises(RefreshTokenReusedError):
        await _refresh(app, pair)

    session = await _session(app, newest)
    assert session.revoked_reason == "refresh_token_reused"
    with pytest.raises(InvalidTokenError):
        await _refresh(app, newest)
    assert not await _is_live(app, newest)


async def test_refresh_after_the_session_expired_fails(app: Services) -> None:
    pair = await app.register_verified(ADA)
    app.clock.advance(seconds=30 * 24 * 3600)
    with pytest.raises(InvalidTokenError):
        await _refresh(app, pair)


async def test_refresh_extends_the_session(app: Services) -> None:
    pair = await app.register_verified(ADA)
    app.clock.advance(seconds=29 * 24 * 3600)
    new = await _refresh(app, pair)
    app.clock.advance(seconds=2 * 24 * 3600)
    await _refresh(app, new)


async def test_concurrent_refreshes_rotate_once_and_share_the_successor(app: Services) -> None:
    pair = await app.register_verified(ADA)
    tasks = 10
    barrier = asyncio.Barrier(tasks)

    async def refresh() -> TokenPair:
        await barrier.wait()
        return await _refresh(app, pair)

    results = await asyncio.gather(*(refresh() for _ in range(tasks)))

    assert len({result.refresh_token for result in results}) == 1
    session = await _session(app, results[0])
    assert session.previous_refresh_jti == app.codec.decode_refresh(pair.refresh_token).token_id
    assert session.refresh_jti == app.codec.decode_refresh(results[0].refresh_token).token_id


# --- logout --------------------------------------------------------------------


async def test_logout_ends_the_session_and_is_idempotent(app: Services) -> None:
    pair = await app.register_verified(ADA)
    other = await app.log_in(ADA)

    await LogOut(app.sessions)(app.tenant, pair.refresh_token)
    await LogOut(app.sessions)(app.tenant, pair.refresh_token)

    with pytest.raises(InvalidTokenError):
        await _refresh(app, pair)
    assert not await _is_live(app, pair)
    assert await _is_live(app, other)
    await _refresh(app, other)


async def test_a_logged_out_token_stays_refused_within_the_grace_window(app: Services) -> None:
    pair = await app.register_verified(ADA)
    await _refresh(app, pair)
    await LogOut(app.sessions)(app.tenant, pair.refresh_token)
    with pytest.raises(InvalidTokenError):
        await _refresh(app, pair)


async def test_logout_everywhere_ends_every_session(app: Services) -> None:
    first = await app.register_verified(ADA)
    second = await app.log_in(ADA)
    third = await app.log_in(ADA)
    bob = await app.register_verified(BOB)

    principal = await app.principal(second)
    count = await LogOutEverywhere(app.sessions)(principal)

    assert count == 3
    for pair in (first, second, third):
        assert not await _is_live(app, pair)
        with pytest.raises(InvalidTokenError):
            await _refresh(app, pair)
    assert await _is_live(app, bob)
    assert await LogOutEverywhere(app.sessions)(await app.principal(bob)) == 1


# --- change password -----------------------------------------------------------


async def test_change_password_keeps_the_current_session_and_ends_the_others(
    app: Services,
) -> None:
    current = await app.register_verified(ADA)
    other = await app.log_in(ADA)

    await ChangePassword(app.sessions)(
        ChangePasswordCommand(await app.principal(current), PASSWORD, NEW_PASSWORD)
    )

    assert await _is_live(app, current)
    await _refresh(app, current)
    assert not await _is_live(app, other)
    with pytest.raises(InvalidCredentialsError):
        await app.log_in(ADA, PASSWORD)
    await app.log_in(ADA, NEW_PASSWORD)
    assert "password" in app.mails_to(ADA)[-1].subject


async def test_change_password_needs_the_current_password(app: Services) -> None:
    current = await app.register_verified(ADA)
    other = await app.log_in(ADA)
    with pytest.raises(InvalidCredentialsError):
        await ChangePassword(app.sessions)(
            ChangePasswordCommand(await app.principal(current), "not the password", NEW_PASSWORD)
        )
    with pytest.raises(WeakPasswordError):
        await ChangePassword(app.sessions)(
            ChangePasswordCommand(await app.principal(current), PASSWORD, "short")
        )
    assert await _is_live(app, other)
    await app.log_in(ADA, PASSWORD)


async def test_change_password_without_a_password_set_is_refused(app: Services) -> None:
    pair = await app.register_verified(ADA, None)
    with pytest.raises(InvalidCredentialsError):
        await ChangePassword(app.sessions)(
            ChangePasswordCommand(await app.principal(pair), "", NEW_PASSWORD)
        )


# --- list and revoke -----------------------------------------------------------


async def test_list_sessions_shows_only_the_callers_live_sessions(app: Services) -> None:
    first = await app.register_verified(ADA, client=ClientInfo("firefox", "192.0.2.1"))
    app.clock.advance(seconds=1)
    second = await app.log_in(ADA)
    app.clock.advance(seconds=1)
    ended = await app.log_in(ADA)
    await LogOut(app.sessions)(app.tenant, ended.refresh_token)
    await app.register_verified(BOB)

    sessions = await ListSessions(app.sessions)(await app.principal(second))

    assert [s.id for s in sessions] == [
        (await _session(app, first)).id,
        (await _session(app, second)).id,
    ]
    assert (sessions[0].user_agent, sessions[0].ip) == ("firefox", "192.0.2.1")


async def test_revoke_session_ends_only_the_callers_own(app: Services) -> None:
    mine = await app.register_verified(ADA)
    my_other = await app.log_in(ADA)
    bobs = await app.register_verified(BOB)
    me = await app.principal(mine)

    with pytest.raises(SessionNotFoundError):
        await RevokeSession(app.sessions)(me, (await _session(app, bobs)).id)
    with pytest.raises(SessionNotFoundError):
        await RevokeSession(app.sessions)(me, uuid.uuid4())
    assert await _is_live(app, bobs)

    await RevokeSession(app.sessions)(me, (await _session(app, my_other)).id)
    assert not await _is_live(app, my_other)
    assert await _is_live(app, mine)
    with pytest.raises(SessionNotFoundError):
        await RevokeSession(app.sessions)(me, (await _session(app, my_other)).id)


async def test_sessions_of_another_tenant_are_unreachable(app: Services) -> None:
    acme = await app.create_tenant("acme")
    theirs = await app.register_verified(ADA, tenant=acme)
    mine = await app.register_verified(ADA)
    me = await app.principal(mine)
    their_session = await _session(app, theirs)

    with pytest.raises(SessionNotFoundError):
        await RevokeSession(app.sessions)(me, their_session.id)
    async with app.uow() as uow:
        assert await uow.sessions.get(app.tenant.id, their_session.id) is None
    assert await LogOutEverywhere(app.sessions)(me) == 1
    assert await _is_live(app, theirs)


async def test_services_can_share_a_store(app: Services) -> None:
    # A second process on the same database: a session started here is seen there.
    other = await make_services(
        store=app.store, clock=app.clock, tenant=app.tenant, codec=app.codec
    )
    pair = await app.register_verified(ADA)
    assert await _is_live(other, pair)
