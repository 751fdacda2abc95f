"""The one rule for ending sessions: one ``session.revoked`` per ended session."""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from identity.application.session_ending import end_session, end_sessions
from identity.application.sessions import LogOutEverywhere
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.events import EventType, SecurityEvent
from tests.fakes import Services, make_services

ADA = "ada@example.com"
BOB = "bob@example.com"
CLIENT = ClientInfo(ip="203.0.113.9", user_agent="ending-test/1.0")


@pytest.fixture
async def app() -> Services:
    return await make_services()


async def _session_id(app: Services, pair: TokenPair) -> UUID:
    return app.codec.decode_refresh(pair.refresh_token).session_id


async def _revoked(app: Services) -> list[SecurityEvent]:
    async with app.uow() as uow:
        found = await uow.events.list(app.tenant.id, limit=100, type=EventType.SESSION_REVOKED)
    return found


async def test_end_sessions_records_one_event_per_ended_session(app: Services) -> None:
    pairs = [await app.register_verified(ADA), await app.log_in(ADA), await app.log_in(ADA)]
    await app.register_verified(BOB)
    ids = [await _session_id(app, pair) for pair in pairs]
    principal = await app.principal(pairs[0])
    async with app.uow() as uow:
        ended = await end_sessions(
            uow,
            app.tenant.id,
            principal.account.id,
            app.clock.now(),
            CLIENT,
            "logout_all",
            by_session_id=ids[0],
        )
        await uow.commit()

    assert sorted(ended) == sorted(ids)
    events = await _revoked(app)
    assert sorted(e.session_id for e in events if e.session_id) == sorted(ids)
    for event in events:
        assert event.user_id == principal.account.id
        assert event.data == {"reason": "logout_all", "by_session_id": str(ids[0])}
        assert (event.ip, event.user_agent) == (CLIENT.ip, CLIENT.user_agent)


async def test_end_sessions_keeps_one_and_records_nothing_for_it(app: Services) -> None:
    kept = await app.register_verified(ADA)
    other = await app.log_in(ADA)
    principal = await app.principal(kept)
    async with app.uow() as uow:
        ended = await end_sessions(
            uow,
            app.tenant.id,
            principal.account.id,
            app.clock.now(),
            CLIENT,
            "password_changed",
            keep=principal.session_id,
        )
        await uow.commit()

    assert ended == [await _session_id(app, other)]
    [event] = await _revoked(app)
    assert event.session_id == ended[0]
    assert event.data == {"reason": "password_changed"}  # no acting session given


async def test_nothing_ended_records_nothing(app: Services) -> None:
    pair = await app.register_verified(ADA)
    principal = await app.principal(pair)
    for _ in range(2):  # the second call finds nothing active
        async with app.uow() as uow:
            await end_sessions(
                uow, app.tenant.id, principal.account.id, app.clock.now(), CLIENT, "admin"
            )
            await uow.commit()
    assert len(await _revoked(app)) == 1


async def test_end_session_records_only_when_it_ended_one(app: Services) -> None:
    pair = await app.register_verified(ADA)
    principal = await app.principal(pair)
    results = []
    for _ in range(2):
        async with app.uow() as uow:
            results.append(
                await end_session(
                    uow,
                    app.tenant.id,
                    principal.account.id,
                    principal.session_id,
                    app.clock.now(),
                    CLIENT,
                    "logout",
                )
            )
            await uow.commit()
    assert results == [True, False]
    [event] = await _revoked(app)
    assert event.session_id == principal.session_id and event.data == {"reason": "logout"}


async def test_end_session_of_an_unknown_session_records_nothing(app: Services) -> None:
    pair = await app.register_verified(ADA)
    principal = await app.principal(pair)
    async with app.uow() as uow:
        assert not await end_session(
            uow,
            app.tenant.id,
            principal.account.id,
            uuid.uuid4(),
            app.clock.now(),
            CLIENT,
            "logout",
        )
    assert await _revoked(app) == []


async def test_logout_everywhere_records_each_session_with_the_callers_as_cause(
    app: Services,
) -> None:
    pairs = [await app.register_verified(ADA), await app.log_in(ADA), await app.log_in(ADA)]
    caller = await app.principal(pairs[1])

    assert await LogOutEverywhere(app.sessions)(caller, CLIENT) == 3

    events = await _revoked(app)
    assert sorted(e.session_id for e in events if e.session_id) == sorted(
        [await _session_id(app, pair) for pair in pairs]
    )
    assert {e.data["by_session_id"] for e in events} == {str(caller.session_id)}
