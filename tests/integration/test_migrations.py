"""The Alembic migrations: every step up and down, and the schema they leave.

The migrate functions are blocking and run their own event loop, so they are
called in a thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.adapters.sqlalchemy import tables
from identity.adapters.sqlalchemy.migrate import downgrade, revisions, upgrade

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_revisions_form_one_line_from_base_to_head() -> None:
    steps = revisions()

    assert steps[0] == "0001"
    assert len(steps) == len(set(steps))


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """A database no migration has touched, on each backend."""
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    )
    return url


async def test_stairway_up_down_and_up_again_one_revision_at_a_time(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    steps = revisions()
    expected_tables = {table.name for table in tables.metadata.sorted_tables}

    for revision in steps:
        await asyncio.to_thread(upgrade, url, revision)
        assert await current_revision(url) == revision
    assert await table_names(url) == expected_tables | {"alembic_version"}

    for position in reversed(range(len(steps))):
        target = steps[position - 1] if position > 0 else "base"
        await asyncio.to_thread(downgrade, url, target)
        assert await current_revision(url) == (None if target == "base" else target)
    assert await table_names(url) <= {"alembic_version"}

    await asyncio.to_thread(upgrade, url, "head")
    assert await current_revision(url) == steps[-1]
    assert await table_names(url) == expected_tables | {"alembic_version"}


async def test_the_provider_names_of_existing_links_are_filled_in(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await asyncio.to_thread(upgrade, url, "0011")
    engine = create_async_engine(url)
    tenant, linked, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                tables.tenants.insert().values(
                    id=tenant, slug="acme", name="Acme", created_at=NOW, disabled=False, settings={}
                )
            )
            for user, email in ((linked, "a@example.com"), (plain, "b@example.com")):
                await connection.execute(
                    tables.users.insert().values(
                        id=user,
                        tenant_id=tenant,
                        email=email,
                        normalized_email=email,
                        is_verified=True,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
            for provider in ("google", "github"):
                await connection.execute(
                    tables.external_identities.insert().values(
                        id=uuid.uuid4(),
                        tenant_id=tenant,
                        user_id=linked,
                        provider=provider,
                        subject=f"{provider}-1",
                        created_at=NOW,
                    )
                )
        await asyncio.to_thread(upgrade, url, "head")
        async with engine.connect() as connection:
            names = dict(
                (
                    await connection.execute(select(tables.users.c.id, tables.users.c.identities))
                ).all()
            )
    finally:
        await engine.dispose()

    assert sorted(names[linked].split(",")) == ["github", "google"]
    assert names[plain] is None


async def test_head_has_exactly_the_default_tenant(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(tables.tenants))).all()

    assert [row.slug for row in rows] == ["default"]
    assert rows[0].disabled is False
    assert rows[0].settings == {}


def user_row(tenant_id: uuid.UUID, email: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "email": email,
        "normalized_email": email.lower(),
        "created_at": NOW,
        "updated_at": NOW,
    }


async def default_tenant_id(engine: AsyncEngine) -> uuid.UUID:
    async with engine.connect() as connection:
        tenant_id: uuid.UUID = (
            await connection.execute(
                select(tables.tenants.c.id).where(tables.tenants.c.slug == "default")
            )
        ).scalar_one()
    return tenant_id


async def test_an_email_is_unique_within_a_tenant(engine: AsyncEngine) -> None:
    tenant_id = await default_tenant_id(engine)
    async with engine.begin() as connection:
        await connection.execute(tables.users.insert(), user_row(tenant_id, "Ada@example.com"))

    with pytest.raises(IntegrityError) as caught:
        async with engine.begin() as connection:
            await connection.execute(tables.users.insert(), user_row(tenant_id, "ada@example.com"))

    if engine.dialect.name == "postgresql":
        # asyncpg's error sits behind SQLAlchemy's adapter exception.
        original = caught.value.orig.__cause__  # type: ignore[union-attr]
        assert original.constraint_name == tables.UQ_USERS_TENANT_EMAIL
    else:
        # SQLite names the columns, not the constraint.
        assert "users.tenant_id, users.normalized_email" in str(caught.value.orig)
    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 1


async def test_the_same_email_is_accepted_in_another_tenant(engine: AsyncEngine) -> None:
    default_id = await default_tenant_id(engine)
    other_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            tables.tenants.insert(),
            {"id": other_id, "slug": "other", "name": "Other", "created_at": NOW, "settings": {}},
        )
        await connection.execute(tables.users.insert(), user_row(default_id, "ada@example.com"))
        await connection.execute(tables.users.insert(), user_row(other_id, "ada@example.com"))

    async with engine.connect() as connection:
        owners = (
            await connection.execute(
                select(tables.users.c.tenant_id).where(
                    tables.users.c.normalized_email == "ada@example.com"
                )
            )
        ).scalars()
        assert sorted(owners, key=str) == sorted([default_id, other_id], key=str)


async def test_the_unique_email_constraint_carries_its_stable_name(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        constraints = await connection.run_sync(
            lambda sync: inspect(sync).get_unique_constraints("users")
        )

    assert {c["name"]: c["column_names"] for c in constraints} == {
        tables.UQ_USERS_TENANT_EMAIL: ["tenant_id", "normalized_email"]
    }


async def test_the_schema_at_head_matches_the_tables_module(migrated_postgres_url: str) -> None:
    engine = create_async_engine(migrated_postgres_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "compare_server_default": False}
                    ),
                    tables.metadata,
                )
            )
    finally:
        await engine.dispose()

    assert differences == []
