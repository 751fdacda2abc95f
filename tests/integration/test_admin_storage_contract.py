"""The storage the admin API adds, on memory, SQLite and Postgres alike.

Fixtures and builders are the repository contract's (``test_repository_contract``).
"""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta

import pytest

from identity.adapters.memory.api_keys import MemoryApiKeyReader
from identity.adapters.sqlalchemy.api_keys import SqlApiKeyReader
from identity.application.ports import ApiKeyReader, Position
from identity.domain.api_keys import ApiKey, Scope
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.otp import OtpPurpose
from identity.domain.tenants import Tenant
from tests.integration import test_repository_contract as contract
from tests.integration.test_repository_contract import (
    NOW,
    Storage,
    add_account,
    add_sessions,
    new_account,
    new_challenge,
    new_session,
    read,
    write,
)

# The contract's fixtures: the same three backends, the same tenants.
contract_postgres_url = contract.contract_postgres_url
storage_url = contract.storage_url
storage = contract.storage
tenant = contract.tenant
other_tenant = contract.other_tenant


async def test_accounts_are_paged_by_creation_then_id(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    accounts = [
        new_account(tenant, f"u{n}@example.test", created_at=NOW + timedelta(seconds=n // 2))
        for n in range(5)
    ]
    async with storage.uow() as uow:
        for account in [*accounts, new_account(other_tenant, "x@example.test")]:
            await uow.accounts.add(account)
        await uow.commit()
    ordered = sorted(accounts, key=lambda account: (account.created_at, account.id))

    first = await read(storage, lambda uow: uow.accounts.list_page(tenant.id, None, 2))
    assert [a.id for a in first] == [a.id for a in ordered[:2]]
    after = Position(first[-1].created_at, first[-1].id)
    rest = await read(storage, lambda uow: uow.accounts.list_page(tenant.id, after, 10))
    assert [a.id for a in rest] == [a.id for a in ordered[2:]]
    assert rest[0] == ordered[2]  # mapped fully, microseconds included


async def test_deleting_an_account_erases_what_is_tied_to_it_and_frees_the_address(
    storage: Storage, tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    alices, bobs = new_session(tenant, alice), new_session(tenant, bob)
    await add_sessions(storage, alices, bobs)
    link = LinkedIdentity(uuid.uuid4(), tenant.id, alice.id, "google", "g-1", None, NOW)
    await write(storage, lambda uow: uow.external_identities.add(link))
    for purpose in (OtpPurpose.LOGIN, OtpPurpose.ACCOUNT_DELETION):
        challenge = new_challenge(tenant, alice.email.key, purpose)
        await write(storage, lambda uow, c=challenge: uow.challenges.replace(c))

    async with storage.uow() as uow:
        assert await uow.accounts.delete(tenant.id, alice.id)
        assert await uow.challenges.delete_for_email(tenant.id, alice.email.key) == 2
        assert not await uow.accounts.delete(tenant.id, alice.id)
        await uow.commit()

    async with storage.uow() as uow:
        assert await uow.accounts.get(tenant.id, alice.id) is None
        assert await uow.sessions.get(tenant.id, alices.id) is None
        assert await uow.sessions.get(tenant.id, bobs.id) is not None
        assert await uow.external_identities.get(tenant.id, "google", "g-1") is None
        assert await uow.challenges.get(tenant.id, alice.email.key, OtpPurpose.LOGIN) is None
        await uow.accounts.add(new_account(tenant))  # the address is free again
        await uow.commit()


async def test_a_session_opens_only_for_an_active_account_and_records_the_login(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    later = NOW + timedelta(minutes=5)
    session = new_session(tenant, alice, created_at=later)
    assert await write(storage, lambda uow: uow.sessions.add(session))
    stored = await read(storage, lambda uow: uow.accounts.get(tenant.id, alice.id))
    assert stored is not None and stored.last_login_at == later

    elsewhere = new_session(other_tenant, alice)  # a session may not cross tenants
    assert not await write(storage, lambda uow: uow.sessions.add(elsewhere))
    alice.disable(NOW)
    await write(storage, lambda uow: uow.accounts.update(alice))
    refused = new_session(tenant, alice)
    assert not await write(storage, lambda uow: uow.sessions.add(refused))
    assert await read(storage, lambda uow: uow.sessions.get(tenant.id, refused.id)) is None
    ghost = new_session(tenant, new_account(tenant, "ghost@example.test"))
    assert not await write(storage, lambda uow: uow.sessions.add(ghost))


async def test_a_page_of_accounts_carries_their_providers(storage: Storage, tenant: Tenant) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    links = [
        LinkedIdentity(uuid.uuid4(), tenant.id, alice.id, "google", "a", None, NOW),
        LinkedIdentity(uuid.uuid4(), tenant.id, bob.id, "google", "b", "b@x.test", NOW),
    ]
    for link in links:
        await write(storage, lambda uow, link=link: uow.external_identities.add(link))
    mine = await read(
        storage, lambda uow: uow.external_identities.list_for_account(tenant.id, alice.id)
    )
    assert mine == links[:1]
    page = await read(storage, lambda uow: uow.accounts.list_page(tenant.id, None, 10))
    assert {account.id: account.identities for account in page} == {
        alice.id: ("google",),
        bob.id: ("google",),
    }
    await write(storage, lambda uow: uow.external_identities.delete(tenant.id, links[1].id))
    page = await read(storage, lambda uow: uow.accounts.list_page(tenant.id, None, 10))
    assert [account.identities for account in page if account.id == bob.id] == [()]


async def test_the_key_reader_sees_committed_keys_at_once(storage: Storage, tenant: Tenant) -> None:
    reader: ApiKeyReader
    if storage.engine is not None:
        reader = SqlApiKeyReader(storage.engine)
    elif isinstance(storage.uow, functools.partial):
        reader = MemoryApiKeyReader(storage.uow.args[0])
    else:  # the container's memory choice: test_identity_testing checks its key reader
        pytest.skip("the container's memory storage exposes no store to build a reader on")
    key = ApiKey(uuid.uuid4(), tenant.id, "ops", frozenset({Scope.USERS_READ}), "d" * 64, NOW)
    async with storage.uow() as uow:
        await uow.api_keys.add(key)
        if not storage.serialises_transactions:
            assert await reader.get(key.id) is None  # not committed yet
        await uow.commit()
    assert await reader.get(key.id) == key
    key.revoke(NOW + timedelta(seconds=1))
    await write(storage, lambda uow: uow.api_keys.update(key))
    found = await reader.get(key.id)
    assert found is not None and not found.is_active
    assert await reader.get(uuid.uuid4()) is None
