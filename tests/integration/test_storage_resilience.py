"""Storage edge cases: dead connections on the hot read, damaged mail, stale copies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import insert, select

from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.native import native_pool
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import StorageUnavailableError
from identity.domain.mail import EmailMessage

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SEALER = Sealer("s" * 40, "outbox")


async def default_tenant_id(uow: SqlUnitOfWork) -> uuid.UUID:
    tenant = await uow.tenants.get_by_slug("default")
    assert tenant is not None
    return tenant.id


async def test_a_dead_connection_on_the_hot_read_is_at_most_one_503_then_replaced(
    migrated_postgres_url: str,
) -> None:
    engine = make_engine(migrated_postgres_url, pool_size=1)
    reader = SqlActiveSessionReader(engine)
    try:
        ids = (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
        assert await reader.account_for_session(*ids, NOW) is None  # opens the connection
        native = native_pool(engine)  # the hot read's own pool
        assert native is not None
        async with (await native.pool()).acquire() as connection:
            pid = connection.get_server_pid()
        killer = await asyncpg.connect(migrated_postgres_url.replace("+asyncpg", ""))
        try:
            await killer.execute("select pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        # asyncpg's pool replaces a connection it already knows is closed; one
        # it does not know yet fails that one read with a 503, never more.
        failures = 0
        try:
            assert await reader.account_for_session(*ids, NOW) is None
        except StorageUnavailableError:
            failures += 1
        assert await reader.account_for_session(*ids, NOW) is None  # a fresh connection
        assert failures <= 1
    finally:
        await engine.dispose()


async def test_an_unreadable_queued_mail_is_given_up_and_the_rest_is_delivered(
    migrated_postgres_url: str,
) -> None:
    engine = make_engine(migrated_postgres_url)
    try:
        async with SqlUnitOfWork(engine, SEALER) as uow:
            tenant_id = await default_tenant_id(uow)
            await uow.outbox.add(
                tenant_id, EmailMessage("a@example.com", "Hi", "text", "<p>html</p>", "s@x.io"), NOW
            )
            await uow.commit()
        damaged = uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                insert(t.outbox).values(
                    id=damaged,
                    tenant_id=tenant_id,
                    sealed_message=b"sealed under another secret",
                    state="pending",
                    attempts=0,
                    created_at=NOW - timedelta(minutes=1),
                    next_attempt_at=NOW - timedelta(minutes=1),
                )
            )
        async with SqlUnitOfWork(engine, SEALER) as uow:
            items = await uow.outbox.claim_due(NOW, 10, timedelta(minutes=1))
            await uow.commit()
        assert [item.message.to for item in items] == ["a@example.com"]
        async with engine.connect() as connection:
            row = (await connection.execute(select(t.outbox).where(t.outbox.c.id == damaged))).one()
        assert row.state == "dead" and row.sealed_message is None
    finally:
        await engine.dispose()


async def test_a_stale_copy_does_not_undo_a_concurrent_disable(migrated_postgres_url: str) -> None:
    engine = make_engine(migrated_postgres_url)
    try:
        async with SqlUnitOfWork(engine, SEALER) as uow:
            tenant_id = await default_tenant_id(uow)
            account = Account(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                email=Email("ada@example.com"),
                created_at=NOW,
                updated_at=NOW,
            )
            await uow.accounts.add(account)
            await uow.commit()

        async with SqlUnitOfWork(engine, SEALER) as slow:
            stale = await slow.accounts.get(tenant_id, account.id)  # e.g. verify-otp's read
            assert stale is not None and stale.is_active
            async with SqlUnitOfWork(engine, SEALER) as admin:  # `identity users disable`
                current = await admin.accounts.get(tenant_id, account.id)
                assert current is not None
                current.disable(NOW)
                await admin.accounts.update(current)
                await admin.commit()
            stale.verify_email(NOW + timedelta(seconds=1))
            await slow.accounts.update(stale)
            await slow.commit()

        async with SqlUnitOfWork(engine, SEALER) as uow:
            final = await uow.accounts.get(tenant_id, account.id)
        assert final is not None
        assert final.is_verified and not final.is_active
    finally:
        await engine.dispose()
