"""The one-read lookup behind bearer authentication, on memory, SQLite and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from identity.adapters.memory import MemoryActiveSessionReader, MemoryStore, memory_uow_factory
from identity.adapters.sealing import Sealers
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.application.ports import ActiveSessionReader, UnitOfWorkFactory
from identity.domain.accounts import Account
from identity.domain.browser_sessions import BrowserSession
from identity.domain.emails import Email
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    # Database fixtures are synchronous: resolve them outside the event loop.
    if request.param == "memory":
        return None
    return str(request.getfixturevalue(f"migrated_{request.param}_url"))


@pytest.fixture
async def storage(
    storage_url: str | None,
) -> AsyncIterator[tuple[UnitOfWorkFactory, ActiveSessionReader]]:
    if storage_url is None:
        store = MemoryStore()
        yield memory_uow_factory(store), MemoryActiveSessionReader(store)
        return
    url = storage_url
    engine = make_engine(url)
    sealer = Sealers.derive("s" * 40)
    try:
        yield (lambda: SqlUnitOfWork(engine, sealer)), SqlActiveSessionReader(engine)
    finally:
        await engine.dispose()


async def add_tenant(uow: UnitOfWorkFactory, slug: str) -> Tenant:
    tenant = Tenant(id=uuid.uuid4(), slug=slug, name=slug, created_at=NOW)
    async with uow() as unit:
        await unit.tenants.add(tenant)
        await unit.commit()
    return tenant


async def add_account_with_session(
    uow: UnitOfWorkFactory, tenant: Tenant, email: str
) -> tuple[Account, Session]:
    account = Account(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        email=Email(email),
        created_at=NOW,
        updated_at=NOW,
        is_verified=True,
    )
    session = Session(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        user_id=account.id,
        created_at=NOW,
        last_used_at=NOW,
        refresh_jti=uuid.uuid4().hex,
        refresh_issued_at=NOW,
        expires_at=NOW + timedelta(days=1),
    )
    async with uow() as unit:
        await unit.accounts.add(account)
        await unit.sessions.add(session)
        await unit.commit()
    return account, session


async def test_the_active_account_is_found_and_nothing_else(
    storage: tuple[UnitOfWorkFactory, ActiveSessionReader],
) -> None:
    uow, reader = storage
    tenant = await add_tenant(uow, "alpha")
    other_tenant = await add_tenant(uow, "beta")
    ada, ada_session = await add_account_with_session(uow, tenant, "ada@example.com")
    bob, bob_session = await add_account_with_session(uow, tenant, "bob@example.com")

    found = await reader.account_for_session(tenant.id, ada_session.id, ada.id, NOW)
    assert found is not None and found.id == ada.id and found.email.value == "ada@example.com"

    # Someone else's session, another tenant, an unknown session, past expiry.
    assert await reader.account_for_session(tenant.id, bob_session.id, ada.id, NOW) is None
    assert await reader.account_for_session(other_tenant.id, ada_session.id, ada.id, NOW) is None
    assert await reader.account_for_session(tenant.id, uuid.uuid4(), ada.id, NOW) is None
    later = NOW + timedelta(days=2)
    assert await reader.account_for_session(tenant.id, ada_session.id, ada.id, later) is None

    async with uow() as unit:
        await unit.sessions.revoke(tenant.id, ada_session.id, NOW, "logout")
        account = await unit.accounts.get(tenant.id, bob.id)
        assert account is not None
        account.disable(NOW)
        await unit.accounts.update(account)
        await unit.commit()
    assert await reader.account_for_session(tenant.id, ada_session.id, ada.id, NOW) is None
    assert await reader.account_for_session(tenant.id, bob_session.id, bob.id, NOW) is None


async def test_a_browser_cookie_finds_its_session_and_account_whatever_their_state(
    storage: tuple[UnitOfWorkFactory, ActiveSessionReader],
) -> None:
    uow, reader = storage
    tenant = await add_tenant(uow, "alpha")
    other_tenant = await add_tenant(uow, "beta")
    ada, ada_session = await add_account_with_session(uow, tenant, "ada@example.com")
    async with uow() as unit:
        await unit.browser_sessions.add(
            BrowserSession(
                key_digest="d" * 64,
                tenant_id=tenant.id,
                session_id=ada_session.id,
                user_id=ada.id,
                created_at=NOW,
            )
        )
        await unit.commit()

    found = await reader.browser_session(tenant.id, "d" * 64)
    assert found is not None
    session, account = found
    assert (session.id, session.expires_at, account.id, account.email.value) == (
        ada_session.id,
        ada_session.expires_at,
        ada.id,
        "ada@example.com",
    )
    assert await reader.browser_session(tenant.id, "e" * 64) is None
    assert await reader.browser_session(other_tenant.id, "d" * 64) is None

    # Ended and disabled are told, not hidden: the caller judges them.
    async with uow() as unit:
        await unit.sessions.revoke(tenant.id, ada_session.id, NOW, "logout")
        stored = await unit.accounts.get(tenant.id, ada.id)
        assert stored is not None
        stored.disable(NOW)
        await unit.accounts.update(stored)
        await unit.commit()
    found = await reader.browser_session(tenant.id, "d" * 64)
    assert found is not None
    assert found[0].revoked_at is not None and not found[1].is_active
