"""The authorization server's storage on memory, SQLite and Postgres alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from identity.application.ports import Position
from identity.domain.oauth import (
    CODE_REPLAY_WINDOW,
    CODE_TTL,
    AuthMethod,
    AuthorizationCode,
    Client,
    ClientSession,
    ClientType,
    Consent,
    GrantType,
)
from identity.domain.tenants import Tenant
from tests.integration import test_repository_contract as contract
from tests.integration.test_repository_contract import (
    NOW,
    RACERS,
    Storage,
    add_account,
    add_sessions,
    new_session,
    read,
    write,
)

contract_postgres_url = contract.contract_postgres_url
storage_url = contract.storage_url
storage = contract.storage
tenant = contract.tenant
other_tenant = contract.other_tenant


def new_client(tenant: Tenant, name: str = "app", **changes: object) -> Client:
    client = Client(
        client_id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        name=name,
        type=ClientType.CONFIDENTIAL,
        redirect_uris=("https://app.example/cb",),
        grant_types=(GrantType.AUTHORIZATION_CODE, GrantType.CLIENT_CREDENTIALS),
        allowed_scopes=("openid", "email"),
        token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        created_at=NOW,
        jwks={"keys": []},
        secret_digest="d" * 64,
    )
    for key, value in changes.items():
        setattr(client, key, value)
    return client


async def test_clients_round_trip_page_and_stay_in_their_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    clients = [
        new_client(tenant, f"c{n}", created_at=NOW + timedelta(seconds=n // 2)) for n in range(5)
    ]
    for client in [*clients, new_client(other_tenant)]:
        await write(storage, lambda uow, c=client: uow.oauth_clients.add(c))
    ordered = sorted(clients, key=lambda c: (c.created_at, c.client_id))
    first = await read(storage, lambda uow: uow.oauth_clients.list_page(tenant.id, None, 2))
    assert first == ordered[:2]
    after = Position(first[-1].created_at, uuid.UUID(first[-1].client_id))
    rest = await read(storage, lambda uow: uow.oauth_clients.list_page(tenant.id, after, 10))
    assert rest == ordered[2:]

    changed = ordered[0]
    changed.name, changed.redirect_uris = "renamed", ("https://new.example/cb",)
    await write(storage, lambda uow: uow.oauth_clients.update(changed))
    assert await read(storage, lambda uow: uow.oauth_clients.get(changed.client_id)) == changed
    assert not await read(
        storage, lambda uow: uow.oauth_clients.delete(other_tenant.id, changed.client_id)
    )
    assert await read(storage, lambda uow: uow.oauth_clients.delete(tenant.id, changed.client_id))


async def test_a_code_is_spent_by_exactly_one_of_racing_redemptions(
    storage: Storage, tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    client = new_client(tenant)
    await write(storage, lambda uow: uow.oauth_clients.add(client))
    code = AuthorizationCode(
        digest="a" * 64,
        tenant_id=tenant.id,
        client_id=client.client_id,
        user_id=alice.id,
        redirect_uri="https://app.example/cb",
        code_challenge="c" * 43,
        scopes=("openid", "email"),
        audience="identity",
        auth_time=NOW.replace(microsecond=0),
        aal="aal1",
        amr=("pwd",),
        created_at=NOW,
        expires_at=NOW + CODE_TTL,
        nonce="n-1",
        browser_session_id=uuid.uuid4(),
    )
    await write(storage, lambda uow: uow.authorization_codes.add(code))
    barrier = asyncio.Barrier(RACERS)

    async def redeem(session_id: uuid.UUID) -> tuple[bool, uuid.UUID | None]:
        async with storage.uow() as uow:
            await barrier.wait()
            found, first = await uow.authorization_codes.consume(code.digest, NOW, session_id)
            await uow.commit()
            assert found is not None and found.nonce == "n-1"
            return first, found.session_id

    sessions = [uuid.uuid4() for _ in range(RACERS)]
    results = await asyncio.gather(*(redeem(session_id) for session_id in sessions))
    winners = [session for first, session in results if first]
    assert len(winners) == 1 and winners[0] in sessions
    # Every loser sees the session the code was spent for, and so does a late replay.
    assert {session for _, session in results} == {winners[0]}
    found, first = await read(
        storage, lambda uow: uow.authorization_codes.consume(code.digest, NOW, uuid.uuid4())
    )
    assert not first and found is not None and found.session_id == winners[0]
    assert found.scopes == code.scopes and found.amr == code.amr
    assert found.browser_session_id == code.browser_session_id
    unknown = await read(
        storage, lambda uow: uow.authorization_codes.consume("b" * 64, NOW, uuid.uuid4())
    )
    assert unknown == (None, False)
    late = NOW + CODE_TTL + CODE_REPLAY_WINDOW + timedelta(seconds=1)
    assert await read(storage, lambda uow: uow.authorization_codes.delete_expired(late)) == 1


async def test_client_sessions_and_consents(storage: Storage, tenant: Tenant) -> None:
    alice = await add_account(storage, tenant)
    client = new_client(tenant)
    await write(storage, lambda uow: uow.oauth_clients.add(client))
    session = new_session(tenant, alice)
    await add_sessions(storage, session)
    browser = uuid.uuid4()
    link = ClientSession(
        session.id, tenant.id, client.client_id, alice.id, ("openid",), "aud", NOW, NOW, browser
    )
    await write(storage, lambda uow: uow.client_sessions.add(link))
    assert await read(storage, lambda uow: uow.client_sessions.get(tenant.id, session.id)) == link
    assert await read(
        storage, lambda uow: uow.client_sessions.list_for_user(tenant.id, alice.id)
    ) == [link]
    assert await read(
        storage, lambda uow: uow.client_sessions.list_for_client(tenant.id, client.client_id)
    ) == [link]
    assert await read(
        storage, lambda uow: uow.client_sessions.list_for_browser_session(tenant.id, browser)
    ) == [link]

    consent = Consent(tenant.id, alice.id, client.client_id, ("openid",), NOW)
    await write(storage, lambda uow: uow.consents.put(consent))
    wider = Consent(tenant.id, alice.id, client.client_id, ("openid", "email"), NOW)
    await write(storage, lambda uow: uow.consents.put(wider))
    assert await read(storage, lambda uow: uow.consents.list_for_user(tenant.id, alice.id)) == [
        wider
    ]
    # Deleting the client takes its consents and session links with it.
    await write(storage, lambda uow: uow.oauth_clients.delete(tenant.id, client.client_id))
    assert await read(storage, lambda uow: uow.consents.list_for_user(tenant.id, alice.id)) == []
    assert await read(storage, lambda uow: uow.client_sessions.get(tenant.id, session.id)) is None


async def test_ended_client_sessions_are_leased_once_and_outlive_their_account(
    storage: Storage, tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    client = new_client(tenant, backchannel_logout_uri="https://app.example/bcl")
    await write(storage, lambda uow: uow.oauth_clients.add(client))
    live, revoked = new_session(tenant, alice), new_session(tenant, alice)
    await add_sessions(storage, live, revoked)
    for session in (live, revoked):
        link = ClientSession(
            session.id, tenant.id, client.client_id, alice.id, ("openid",), "aud", NOW, NOW
        )
        await write(storage, lambda uow, link=link: uow.client_sessions.add(link))
    await write(storage, lambda uow: uow.sessions.revoke(tenant.id, revoked.id, NOW, "logout"))
    lease = timedelta(seconds=60)

    claimed = await write(storage, lambda uow: uow.client_sessions.claim_ended(NOW, 10, lease))
    assert [item.link.session_id for item in claimed] == [revoked.id]
    assert claimed[0].backchannel_logout_uri == "https://app.example/bcl"
    assert claimed[0].link.logout_attempts == 1
    # Leased: not claimed again until the lease ends.
    assert await write(storage, lambda uow: uow.client_sessions.claim_ended(NOW, 10, lease)) == []
    later = NOW + lease + timedelta(seconds=1)
    again = await write(storage, lambda uow: uow.client_sessions.claim_ended(later, 10, lease))
    assert [item.link.session_id for item in again] == [revoked.id]
    assert again[0].link.logout_attempts == 2
    await write(storage, lambda uow: uow.client_sessions.forget([revoked.id]))

    # The account erased: its live session goes with it, the link stays to be told.
    await write(storage, lambda uow: uow.accounts.delete(tenant.id, alice.id))
    gone = await write(storage, lambda uow: uow.client_sessions.claim_ended(later, 10, lease))
    assert [item.link.session_id for item in gone] == [live.id]
