"""The browser sessions' repository contract, on the in-memory store, SQLite and PostgreSQL.

The storage fixtures are those of ``test_repository_contract``, imported by name.
"""

# ruff: noqa: F811

from __future__ import annotations

from identity.domain.browser_sessions import BrowserSession
from identity.domain.tenants import Tenant
from tests.integration.test_repository_contract import (  # noqa: F401 (fixtures)
    NOW,
    Storage,
    add_account,
    add_sessions,
    contract_postgres_url,
    new_session,
    other_tenant,
    read,
    storage,
    storage_url,
    tenant,
    write,
)


async def test_a_browser_session_is_found_by_its_digest_in_its_tenant_only(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    api_session = new_session(tenant, account)
    await add_sessions(storage, session, api_session)
    browser = BrowserSession("d" * 64, tenant.id, session.id, account.id, NOW)
    await write(storage, lambda uow: uow.browser_sessions.add(browser))

    assert await read(storage, lambda uow: uow.browser_sessions.get(tenant.id, "d" * 64)) == browser
    assert (
        await read(storage, lambda uow: uow.browser_sessions.get(other_tenant.id, "d" * 64)) is None
    )
    assert await read(storage, lambda uow: uow.browser_sessions.get(tenant.id, "e" * 64)) is None
    ids = await read(
        storage, lambda uow: uow.browser_sessions.session_ids_for_account(tenant.id, account.id)
    )
    assert ids == {session.id}

    assert not await write(
        storage, lambda uow: uow.browser_sessions.delete(other_tenant.id, "d" * 64)
    )
    assert await write(storage, lambda uow: uow.browser_sessions.delete(tenant.id, "d" * 64))
    assert await read(storage, lambda uow: uow.browser_sessions.get(tenant.id, "d" * 64)) is None


async def test_erasing_the_account_erases_its_browser_sessions(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)
    browser = BrowserSession("f" * 64, tenant.id, session.id, account.id, NOW)
    await write(storage, lambda uow: uow.browser_sessions.add(browser))
    assert await write(storage, lambda uow: uow.accounts.delete(tenant.id, account.id))
    assert await read(storage, lambda uow: uow.browser_sessions.get(tenant.id, "f" * 64)) is None
    ids = await read(
        storage, lambda uow: uow.browser_sessions.session_ids_for_account(tenant.id, account.id)
    )
    assert ids == set()
