"""One repository contract, run against every unit of work the service can use.

The same tests run on the in-memory storage (what the unit tests use), on
SQLAlchemy over SQLite (the embedded default) and over PostgreSQL. A behaviour
that differs between them is a bug in one of them.

Races are real: many tasks, each with its own unit of work, released together
by one ``asyncio.Barrier``. SQLite serialises transactions (``BEGIN
IMMEDIATE``), so a race there is a queue; the outcome must be the same.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import attrs
import pytest
from dependency_injector import providers
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.memory import MemoryActiveSessionReader, MemoryStore, memory_uow_factory
from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.reads import SqlActiveSessionReader
from identity.adapters.sqlalchemy.tenants import SEALED_SETTING_PREFIX
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.application.ports import (
    ActiveSessionReader,
    DeliveryOutcome,
    DueDelivery,
    OutboxItem,
    Position,
    UnitOfWork,
    UnitOfWorkFactory,
)
from identity.domain.accounts import Account
from identity.domain.code_requests import CodeRequest, Registration
from identity.domain.emails import Email
from identity.domain.errors import (
    EmailAlreadyRegisteredError,
    IdentityInUseError,
    OtpInvalidError,
    StorageUnavailableError,
    TenantAlreadyExistsError,
)
from identity.domain.events import EventType, SecurityEvent
from identity.domain.external_sign_in import (
    IdentityAlreadyLinkedError,
    LinkedIdentity,
    PendingSignIn,
)
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.domain.webhooks import DeliveryStatus, Webhook
from identity.entrypoints.http.app import build_container
from identity.entrypoints.settings import Secret, Settings
from tests.databases import PostgresDatabases

SECRET_KEY = "contract-test-secret-key-0123456789abcdef"
MEMORY_BY_CONTAINER = "memory-by-container"
# Microseconds on purpose: every backend must give back exactly what it was given.
NOW = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
RACERS = 10
CODE = "482913"

T_ = TypeVar("T_")


@attrs.frozen
class Storage:
    kind: str
    uow: UnitOfWorkFactory
    session_reader: ActiveSessionReader
    engine: AsyncEngine | None = None

    @property
    def serialises_transactions(self) -> bool:
        """SQLite: a second transaction waits for the first to end, readers included."""
        return self.kind == "sqlite"


@pytest.fixture(scope="module")
def contract_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """One migrated database for the module: a fresh one per test costs a second each."""
    url = postgres_databases.create_migrated()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(params=["memory", "memory-by-container", "sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    # Resolved in a plain fixture: the database fixtures run blocking migrations.
    if request.param == "memory":
        return None
    if request.param == "memory-by-container":
        return MEMORY_BY_CONTAINER
    name = "migrated_sqlite_url" if request.param == "sqlite" else "contract_postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def storage(storage_url: str | None) -> AsyncIterator[Storage]:
    if storage_url is None:
        store = MemoryStore()
        yield Storage("memory", memory_uow_factory(store), MemoryActiveSessionReader(store))
        return
    if storage_url == MEMORY_BY_CONTAINER:
        # What identity.testing's in-memory server runs on: the container's choice.
        container = build_container(Settings(secret_key=Secret(SECRET_KEY)))
        container.storage.override(providers.Object("memory"))
        yield Storage("memory", container.uow, container.session_reader())
        return
    engine = make_engine(storage_url, pool_size=RACERS + 2)
    kind = "sqlite" if storage_url.startswith("sqlite") else "postgres"
    try:
        if kind == "postgres":
            await _empty(engine)
        yield Storage(
            kind,
            functools.partial(SqlUnitOfWork, engine, Sealer(SECRET_KEY, "outbox")),
            SqlActiveSessionReader(engine),
            engine,
        )
    finally:
        await engine.dispose()


async def _empty(engine: AsyncEngine) -> None:
    """Back to the migrated state: every tenant's rows cascade away with it."""
    async with engine.begin() as connection:
        await connection.execute(delete(t.tenants).where(t.tenants.c.slug != "default"))
        for table in t.metadata.sorted_tables:
            if "tenant_id" in table.c:
                left = await connection.execute(select(func.count()).select_from(table))
                assert left.scalar_one() == 0, f"{table.name} kept rows of a deleted tenant"


@pytest.fixture
async def tenant(storage: Storage) -> Tenant:
    return await add_tenant(storage, "acme")


@pytest.fixture
async def other_tenant(storage: Storage) -> Tenant:
    return await add_tenant(storage, "globex")


# --- builders ------------------------------------------------------------------


async def add_tenant(storage: Storage, slug: str, **settings: Any) -> Tenant:
    tenant = Tenant(
        id=uuid.uuid4(), slug=slug, name=slug.title(), created_at=NOW, settings=settings
    )
    async with storage.uow() as uow:
        await uow.tenants.add(tenant)
        await uow.commit()
    return tenant


def new_account(tenant: Tenant, email: str = "alice@example.test", **fields: Any) -> Account:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "email": Email(email),
        "created_at": NOW,
        "updated_at": NOW,
        "password_hash": "$bcrypt-sha256$v=2,t=2b,r=4$fake$hash",
        "full_name": "Alice Liddell",
    }
    values.update(fields)
    return Account(**values)


async def add_account(
    storage: Storage, tenant: Tenant, email: str = "alice@example.test"
) -> Account:
    account = new_account(tenant, email)
    async with storage.uow() as uow:
        await uow.accounts.add(account)
        await uow.commit()
    return account


def new_challenge(
    tenant: Tenant,
    email_key: str = "alice@example.test",
    purpose: OtpPurpose = OtpPurpose.VERIFICATION,
    **fields: Any,
) -> OtpChallenge:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "email_key": email_key,
        "purpose": purpose,
        "code_digest": "digest-" + uuid.uuid4().hex,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
        "max_attempts": 5,
    }
    values.update(fields)
    return OtpChallenge(**values)


def new_session(tenant: Tenant, account: Account, **fields: Any) -> Session:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "user_id": account.id,
        "created_at": NOW,
        "last_used_at": NOW,
        "refresh_jti": "jti-" + uuid.uuid4().hex,
        "refresh_issued_at": NOW,
        "expires_at": NOW + timedelta(days=30),
        "user_agent": "Mozilla/5.0 (contract)",
        "ip": "203.0.113.7",
    }
    values.update(fields)
    return Session(**values)


async def add_sessions(storage: Storage, *sessions: Session) -> None:
    async with storage.uow() as uow:
        for session in sessions:
            await uow.sessions.add(session)
        await uow.commit()


def message(to: str = "alice@example.test", subject: str = "Your code") -> EmailMessage:
    return EmailMessage(
        to=to,
        subject=subject,
        text=f"Your code is {CODE}. Ünïcödé survives.",
        html=f"<p>Your code is <strong>{CODE}</strong></p>",
        sender="Acme <no-reply@acme.test>",
    )


async def read(storage: Storage, action: Callable[[UnitOfWork], Awaitable[T_]]) -> T_:
    """Run ``action`` in a fresh unit of work that commits nothing."""
    async with storage.uow() as uow:
        return await action(uow)


async def write(storage: Storage, action: Callable[[UnitOfWork], Awaitable[T_]]) -> T_:
    """Run ``action`` in a fresh unit of work and commit."""
    async with storage.uow() as uow:
        result = await action(uow)
        await uow.commit()
        return result


async def race(count: int, attempt: Callable[[], Awaitable[T_]]) -> list[T_ | BaseException]:
    """Start ``count`` tasks that pass one barrier together, then each run ``attempt``."""
    barrier = asyncio.Barrier(count)

    async def one() -> T_:
        await barrier.wait()
        return await attempt()

    return await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)


def unexpected(results: list[Any], *allowed: type[BaseException]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]


# --- tenants ------------------------------------------------------------------


async def test_tenant_round_trips_by_id_and_slug(storage: Storage) -> None:
    tenant = await add_tenant(storage, "acme", otp_ttl=300, redirects=["https://a.test/cb"])

    assert await read(storage, lambda uow: uow.tenants.get(tenant.id)) == tenant
    assert await read(storage, lambda uow: uow.tenants.get_by_slug("acme")) == tenant
    assert await read(storage, lambda uow: uow.tenants.get_by_slug("nobody")) is None
    assert await read(storage, lambda uow: uow.tenants.get(uuid.uuid4())) is None


async def test_tenants_are_listed_by_slug(storage: Storage) -> None:
    for slug in ("zeta", "alpha", "mid"):
        await add_tenant(storage, slug)

    slugs = [tenant.slug for tenant in await read(storage, lambda uow: uow.tenants.list())]

    assert slugs == sorted(slugs)
    assert {"alpha", "mid", "zeta"} <= set(slugs)


async def test_duplicate_slug_is_refused_and_the_transaction_goes_on(storage: Storage) -> None:
    await add_tenant(storage, "acme")
    later = Tenant(id=uuid.uuid4(), slug="later", name="Later", created_at=NOW)

    async with storage.uow() as uow:
        with pytest.raises(TenantAlreadyExistsError):
            await uow.tenants.add(Tenant(id=uuid.uuid4(), slug="acme", name="Copy", created_at=NOW))
        await uow.tenants.add(later)
        await uow.commit()

    assert await read(storage, lambda uow: uow.tenants.get_by_slug("later")) == later
    acme = await read(storage, lambda uow: uow.tenants.get_by_slug("acme"))
    assert acme is not None and acme.name == "Acme"


async def test_tenant_update_stores_settings_and_disabled(storage: Storage) -> None:
    tenant = await add_tenant(storage, "acme")
    changed = attrs.evolve(
        tenant,
        name="Acme Corp",
        disabled=True,
        settings={"otp_ttl": 120, "oauth_redirect_allowlist": ["https://acme.test/cb"]},
    )

    await write(storage, lambda uow: uow.tenants.update(changed))

    assert await read(storage, lambda uow: uow.tenants.get(tenant.id)) == changed


async def test_provider_client_secrets_round_trip_and_are_stored_sealed(storage: Storage) -> None:
    secret = "gh-secret-value-" + uuid.uuid4().hex
    tenant = await add_tenant(
        storage, "acme", github_client_id="Iv1.abc", github_client_secret=secret, otp_ttl=120
    )

    assert await read(storage, lambda uow: uow.tenants.get(tenant.id)) == tenant
    if storage.engine is None:
        return
    async with storage.engine.connect() as connection:
        stored = (
            await connection.execute(
                select(t.tenants.c.settings).where(t.tenants.c.id == tenant.id)
            )
        ).scalar_one()
    assert secret not in json.dumps(stored)
    assert stored["github_client_secret"].startswith(SEALED_SETTING_PREFIX)
    assert stored["github_client_id"] == "Iv1.abc" and stored["otp_ttl"] == 120


async def test_a_client_secret_stored_in_clear_by_an_earlier_version_still_reads(
    storage: Storage,
) -> None:
    if storage.engine is None:
        pytest.skip("SQL storage only: the in-memory store keeps no rows")
    tenant = await add_tenant(storage, "acme")
    async with storage.engine.begin() as connection:
        await connection.execute(
            update(t.tenants)
            .where(t.tenants.c.id == tenant.id)
            .values(settings={"google_client_secret": "clear-from-before"})
        )

    found = await read(storage, lambda uow: uow.tenants.get(tenant.id))

    assert found is not None and found.settings == {"google_client_secret": "clear-from-before"}


async def test_a_client_secret_sealed_with_another_key_reads_as_not_set(storage: Storage) -> None:
    if storage.engine is None:
        pytest.skip("SQL storage only: the in-memory store keeps no rows")
    tenant = await add_tenant(storage, "acme", github_client_secret="s3cret", otp_ttl=60)
    foreign = functools.partial(
        SqlUnitOfWork, storage.engine, Sealer("another-secret-" * 3, "outbox")
    )

    async with foreign() as uow:
        found = await uow.tenants.get(tenant.id)

    assert found is not None and found.settings == {"otp_ttl": 60}


# --- accounts -----------------------------------------------------------------


async def test_account_round_trips_by_id_and_email_key(storage: Storage, tenant: Tenant) -> None:
    account = new_account(tenant, "Alice.Smith@example.test", full_name=None)
    await write(storage, lambda uow: uow.accounts.add(account))

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id)) == account
    found = await read(
        storage, lambda uow: uow.accounts.get_by_email(tenant.id, "alice.smith@example.test")
    )
    assert found == account
    assert found is not None and found.email.value == "Alice.Smith@example.test"
    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, uuid.uuid4())) is None
    missing = await read(storage, lambda uow: uow.accounts.get_by_email(tenant.id, "bob@x.test"))
    assert missing is None


async def test_duplicate_email_key_is_refused_even_in_another_case(
    storage: Storage, tenant: Tenant
) -> None:
    original = await add_account(storage, tenant, "alice@example.test")

    async with storage.uow() as uow:
        with pytest.raises(EmailAlreadyRegisteredError):
            await uow.accounts.add(new_account(tenant, "ALICE@example.test"))
        # The refused insert leaves the transaction usable (a savepoint on SQL).
        assert await uow.accounts.get_by_email(tenant.id, "alice@example.test") == original
        await uow.accounts.add(new_account(tenant, "bob@example.test"))
        await uow.commit()

    assert await read(storage, lambda uow: uow.accounts.get_by_email(tenant.id, "bob@example.test"))


async def test_same_email_in_another_tenant_is_another_account(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await add_account(storage, tenant)
    theirs = await add_account(storage, other_tenant)

    assert mine.id != theirs.id
    assert (
        await read(storage, lambda uow: uow.accounts.get_by_email(tenant.id, mine.email.key))
        == mine
    )
    assert (
        await read(storage, lambda uow: uow.accounts.get_by_email(other_tenant.id, mine.email.key))
        == theirs
    )


async def test_an_account_is_invisible_from_another_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)

    assert await read(storage, lambda uow: uow.accounts.get(other_tenant.id, account.id)) is None
    assert (
        await read(
            storage, lambda uow: uow.accounts.get_by_email(other_tenant.id, account.email.key)
        )
        is None
    )


async def test_account_update_is_stored(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    later = NOW + timedelta(minutes=3)
    account.verify_email(later)
    account.set_password_hash("$bcrypt-sha256$new", later)
    account.full_name = "Alice L."
    account.disable(later)

    await write(storage, lambda uow: uow.accounts.update(account))

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id)) == account


async def test_account_update_through_another_tenant_changes_nothing(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    hijack = attrs.evolve(account, tenant_id=other_tenant.id, full_name="Mallory")

    await write(storage, lambda uow: uow.accounts.update(hijack))

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id)) == account


async def test_racing_registrations_of_one_email_make_one_account(
    storage: Storage, tenant: Tenant
) -> None:
    async def register() -> Account:
        account = new_account(tenant, "race@example.test")
        await write(storage, lambda uow: uow.accounts.add(account))
        return account

    results = await race(RACERS, register)

    assert unexpected(results, EmailAlreadyRegisteredError) == []
    winners = [r for r in results if isinstance(r, Account)]
    assert len(winners) == 1
    stored = await read(
        storage, lambda uow: uow.accounts.get_by_email(tenant.id, "race@example.test")
    )
    assert stored == winners[0]


# --- one-time code challenges ---------------------------------------------------


async def test_challenge_round_trips(storage: Storage, tenant: Tenant) -> None:
    challenge = new_challenge(tenant)
    await write(storage, lambda uow: uow.challenges.replace(challenge))

    key = (tenant.id, challenge.email_key, challenge.purpose)
    assert await read(storage, lambda uow: uow.challenges.get(*key)) == challenge
    assert (
        await read(storage, lambda uow: uow.challenges.get(tenant.id, "x@y.test", OtpPurpose.LOGIN))
        is None
    )


async def test_replace_keeps_one_challenge_per_tenant_email_and_purpose(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = new_challenge(tenant)
    login = new_challenge(tenant, purpose=OtpPurpose.LOGIN)
    elsewhere = new_challenge(other_tenant)
    for challenge in (first, login, elsewhere):
        await write(storage, functools.partial(_replace, challenge=challenge))
    second = new_challenge(tenant, created_at=NOW + timedelta(minutes=1))

    await write(storage, lambda uow: uow.challenges.replace(second))

    get = functools.partial(_get_challenge, tenant_id=tenant.id, email_key=first.email_key)
    assert await read(storage, functools.partial(get, purpose=OtpPurpose.VERIFICATION)) == second
    assert await read(storage, functools.partial(get, purpose=OtpPurpose.LOGIN)) == login
    assert (
        await read(
            storage,
            functools.partial(
                _get_challenge,
                tenant_id=other_tenant.id,
                email_key=first.email_key,
                purpose=OtpPurpose.VERIFICATION,
            ),
        )
        == elsewhere
    )
    # The replaced code is gone: checking it cannot succeed any more.
    first.check(first.code_digest, NOW)
    assert await write(storage, lambda uow: uow.challenges.record_check(first, 0)) is False


async def _replace(uow: UnitOfWork, *, challenge: OtpChallenge) -> None:
    await uow.challenges.replace(challenge)


async def _get_challenge(
    uow: UnitOfWork, *, tenant_id: uuid.UUID, email_key: str, purpose: OtpPurpose
) -> OtpChallenge | None:
    return await uow.challenges.get(tenant_id, email_key, purpose)


async def test_record_check_applies_only_if_nobody_checked_meanwhile(
    storage: Storage, tenant: Tenant
) -> None:
    challenge = new_challenge(tenant)
    await write(storage, lambda uow: uow.challenges.replace(challenge))
    key = (tenant.id, challenge.email_key, challenge.purpose)

    wrong = copy.deepcopy(challenge)
    with pytest.raises(OtpInvalidError):
        wrong.check("not-the-digest", NOW)
    assert await write(storage, lambda uow: uow.challenges.record_check(wrong, 0)) is True
    stored = await read(storage, lambda uow: uow.challenges.get(*key))
    assert stored is not None and stored.attempts == 1 and stored.consumed_at is None

    # A check made on the stale copy (attempts 0) lost the race: not applied.
    stale = copy.deepcopy(challenge)
    stale.check(stale.code_digest, NOW)
    assert await write(storage, lambda uow: uow.challenges.record_check(stale, 0)) is False
    stored = await read(storage, lambda uow: uow.challenges.get(*key))
    assert stored is not None and stored.consumed_at is None

    fresh = copy.deepcopy(stored)
    fresh.check(fresh.code_digest, NOW + timedelta(seconds=5))
    assert await write(storage, lambda uow: uow.challenges.record_check(fresh, 1)) is True
    stored = await read(storage, lambda uow: uow.challenges.get(*key))
    assert stored is not None and stored.consumed_at == NOW + timedelta(seconds=5)
    assert stored.attempts == 1

    # Spent: even the right attempts count does not apply a second time.
    assert await write(storage, lambda uow: uow.challenges.record_check(fresh, 1)) is False


async def test_record_check_of_another_tenant_is_refused(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    challenge = new_challenge(tenant)
    await write(storage, lambda uow: uow.challenges.replace(challenge))
    forged = attrs.evolve(challenge, tenant_id=other_tenant.id)
    forged.check(forged.code_digest, NOW)

    assert await write(storage, lambda uow: uow.challenges.record_check(forged, 0)) is False
    stored = await read(
        storage, lambda uow: uow.challenges.get(tenant.id, challenge.email_key, challenge.purpose)
    )
    assert stored == challenge


async def test_racing_checks_of_one_code_let_exactly_one_win(
    storage: Storage, tenant: Tenant
) -> None:
    challenge = new_challenge(tenant)
    await write(storage, lambda uow: uow.challenges.replace(challenge))

    async def spend() -> bool:
        mine = copy.deepcopy(challenge)
        mine.check(mine.code_digest, NOW)
        return await write(storage, lambda uow: uow.challenges.record_check(mine, 0))

    results = await race(RACERS, spend)

    assert unexpected(results) == []
    assert sorted(results, key=bool) == [False] * (RACERS - 1) + [True]


async def test_delete_expired_challenges_removes_expired_and_spent_ones(
    storage: Storage, tenant: Tenant
) -> None:
    live = new_challenge(tenant, "live@example.test")
    expired = new_challenge(tenant, "old@example.test", expires_at=NOW - timedelta(seconds=1))
    spent = new_challenge(tenant, "spent@example.test", consumed_at=NOW)
    for challenge in (live, expired, spent):
        await write(storage, functools.partial(_replace, challenge=challenge))

    assert await write(storage, lambda uow: uow.challenges.delete_expired(NOW)) == 2

    for gone in (expired, spent):
        assert await read(storage, functools.partial(_same_key, challenge=gone)) is None
    assert await read(storage, functools.partial(_same_key, challenge=live)) == live


async def _same_key(uow: UnitOfWork, *, challenge: OtpChallenge) -> OtpChallenge | None:
    return await uow.challenges.get(challenge.tenant_id, challenge.email_key, challenge.purpose)


# --- sessions -------------------------------------------------------------------


async def test_session_round_trips_within_its_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)

    assert await read(storage, lambda uow: uow.sessions.get(tenant.id, session.id)) == session
    assert await read(storage, lambda uow: uow.sessions.get(other_tenant.id, session.id)) is None
    assert await read(storage, lambda uow: uow.sessions.get(tenant.id, uuid.uuid4())) is None


async def test_rotate_applies_once_per_presented_token(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)
    old_jti = session.refresh_jti
    later = NOW + timedelta(minutes=5)

    first = copy.deepcopy(session)
    first.rotate("jti-second", later, timedelta(days=30))
    assert await write(storage, lambda uow: uow.sessions.rotate(first, old_jti)) is True

    again = copy.deepcopy(session)
    again.rotate("jti-third", later, timedelta(days=30))
    assert await write(storage, lambda uow: uow.sessions.rotate(again, old_jti)) is False

    stored = await read(storage, lambda uow: uow.sessions.get(tenant.id, session.id))
    assert stored == first
    assert stored is not None
    assert stored.refresh_jti == "jti-second"
    assert stored.previous_refresh_jti == old_jti
    assert stored.rotated_at == later
    assert stored.expires_at == later + timedelta(days=30)


async def test_rotate_refuses_a_revoked_session_and_another_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    revoked, foreign = new_session(tenant, account), new_session(tenant, account)
    await add_sessions(storage, revoked, foreign)
    await write(storage, lambda uow: uow.sessions.revoke(tenant.id, revoked.id, NOW, "logout"))

    rotated = copy.deepcopy(revoked)
    rotated.rotate("jti-new", NOW, timedelta(days=1))
    assert (
        await write(storage, lambda uow: uow.sessions.rotate(rotated, revoked.refresh_jti)) is False
    )

    forged = attrs.evolve(foreign, tenant_id=other_tenant.id)
    forged.rotate("jti-forged", NOW, timedelta(days=1))
    assert (
        await write(storage, lambda uow: uow.sessions.rotate(forged, foreign.refresh_jti)) is False
    )
    assert await read(storage, lambda uow: uow.sessions.get(tenant.id, foreign.id)) == foreign


async def test_racing_rotations_of_one_token_let_exactly_one_win(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)

    async def rotate() -> str | None:
        mine = copy.deepcopy(session)
        mine.rotate("jti-" + uuid.uuid4().hex, NOW, timedelta(days=30))
        won = await write(storage, lambda uow: uow.sessions.rotate(mine, session.refresh_jti))
        return mine.refresh_jti if won else None

    results = await race(RACERS, rotate)

    assert unexpected(results) == []
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await read(storage, lambda uow: uow.sessions.get(tenant.id, session.id))
    assert stored is not None
    assert stored.refresh_jti == winners[0]
    assert stored.previous_refresh_jti == session.refresh_jti


async def test_revoke_ends_an_active_session_once(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)

    assert (
        await write(storage, lambda uow: uow.sessions.revoke(other_tenant.id, session.id, NOW, "x"))
        is False
    )
    assert (
        await write(storage, lambda uow: uow.sessions.revoke(tenant.id, session.id, NOW, "logout"))
        is True
    )
    later = NOW + timedelta(hours=1)
    assert (
        await write(storage, lambda uow: uow.sessions.revoke(tenant.id, session.id, later, "again"))
        is False
    )

    stored = await read(storage, lambda uow: uow.sessions.get(tenant.id, session.id))
    assert stored is not None
    assert (stored.revoked_at, stored.revoked_reason) == (NOW, "logout")


async def test_revoke_all_for_account_keeps_the_one_asked_for(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant, "alice@example.test")
    bob = await add_account(storage, tenant, "bob@example.test")
    alice_elsewhere = await add_account(storage, other_tenant, "alice@example.test")
    kept, ended_1, ended_2 = (new_session(tenant, alice) for _ in range(3))
    expired = new_session(tenant, alice, expires_at=NOW - timedelta(seconds=1))
    already = new_session(
        tenant, alice, revoked_at=NOW - timedelta(hours=1), revoked_reason="logout"
    )
    bobs = new_session(tenant, bob)
    foreign = new_session(other_tenant, alice_elsewhere)
    await add_sessions(storage, kept, ended_1, ended_2, expired, already, bobs, foreign)

    count = await write(
        storage,
        lambda uow: uow.sessions.revoke_all_for_account(
            tenant.id, alice.id, NOW, "password_changed", keep=kept.id
        ),
    )

    assert count == 2
    active = await read(
        storage, lambda uow: uow.sessions.list_active_for_account(tenant.id, alice.id, NOW)
    )
    assert [s.id for s in active] == [kept.id]
    for ended in (ended_1, ended_2):
        stored = await read(storage, functools.partial(_get_session, session=ended))
        assert stored is not None
        assert (stored.revoked_at, stored.revoked_reason) == (NOW, "password_changed")
    stored_already = await read(storage, functools.partial(_get_session, session=already))
    assert stored_already == already
    assert await read(storage, functools.partial(_get_session, session=bobs)) == bobs
    assert await read(storage, functools.partial(_get_session, session=foreign)) == foreign

    count = await write(
        storage,
        lambda uow: uow.sessions.revoke_all_for_account(tenant.id, alice.id, NOW, "logout_all"),
    )
    assert count == 1
    assert (
        await read(
            storage, lambda uow: uow.sessions.list_active_for_account(tenant.id, alice.id, NOW)
        )
        == []
    )


async def _get_session(uow: UnitOfWork, *, session: Session) -> Session | None:
    return await uow.sessions.get(session.tenant_id, session.id)


async def test_list_active_for_account_skips_revoked_expired_and_foreign_sessions(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    newer = new_session(tenant, alice, created_at=NOW + timedelta(minutes=2))
    older = new_session(tenant, alice, created_at=NOW - timedelta(minutes=2))
    revoked = new_session(tenant, alice, revoked_at=NOW, revoked_reason="logout")
    expired = new_session(tenant, alice, expires_at=NOW)
    bobs = new_session(tenant, bob)
    await add_sessions(storage, newer, older, revoked, expired, bobs)

    active = await read(
        storage, lambda uow: uow.sessions.list_active_for_account(tenant.id, alice.id, NOW)
    )

    assert active == [older, newer]
    assert (
        await read(
            storage,
            lambda uow: uow.sessions.list_active_for_account(other_tenant.id, alice.id, NOW),
        )
        == []
    )


async def test_delete_expired_sessions_keeps_recently_revoked_ones(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    live = new_session(tenant, account)
    expired = new_session(tenant, account, expires_at=NOW - timedelta(seconds=1))
    revoked_long_ago = new_session(
        tenant, account, revoked_at=NOW - timedelta(days=2), revoked_reason="logout"
    )
    # Kept until the cutoff the purge gives, so a replayed refresh token is still reuse.
    revoked_recently = new_session(
        tenant, account, revoked_at=NOW - timedelta(hours=1), revoked_reason="logout"
    )
    await add_sessions(storage, live, expired, revoked_long_ago, revoked_recently)
    cutoff = NOW - timedelta(days=1)

    assert (
        await write(storage, lambda uow: uow.sessions.delete_expired(NOW, revoked_before=cutoff))
        == 2
    )

    for gone in (expired, revoked_long_ago):
        assert await read(storage, functools.partial(_get_session, session=gone)) is None
    for kept in (live, revoked_recently):
        assert await read(storage, functools.partial(_get_session, session=kept)) == kept


async def test_session_reader_finds_the_active_account_of_an_active_session(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    live = new_session(tenant, alice)
    revoked = new_session(tenant, alice, revoked_at=NOW, revoked_reason="logout")
    expired = new_session(tenant, alice, expires_at=NOW)
    await add_sessions(storage, live, revoked, expired)
    alice.last_login_at = NOW  # opening a session records the sign-in
    find = storage.session_reader.account_for_session

    assert await find(tenant.id, live.id, alice.id, NOW) == alice
    assert await find(tenant.id, revoked.id, alice.id, NOW) is None
    assert await find(tenant.id, expired.id, alice.id, NOW) is None
    assert await find(tenant.id, live.id, alice.id, live.expires_at) is None
    assert await find(tenant.id, live.id, bob.id, NOW) is None  # someone else's session
    assert await find(other_tenant.id, live.id, alice.id, NOW) is None
    assert await find(tenant.id, uuid.uuid4(), alice.id, NOW) is None

    alice.disable(NOW)
    await write(storage, lambda uow: uow.accounts.update(alice))
    assert await find(tenant.id, live.id, alice.id, NOW) is None


async def test_session_reader_sees_only_committed_state(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    find = storage.session_reader.account_for_session

    async with storage.uow() as uow:
        await uow.sessions.add(session)
        if not storage.serialises_transactions:
            assert await find(tenant.id, session.id, account.id, NOW) is None
        await uow.commit()
    account.last_login_at = session.created_at
    assert await find(tenant.id, session.id, account.id, NOW) == account


# --- invalidated tokens -----------------------------------------------------------


async def test_invalidated_token_add_is_idempotent_and_scoped_by_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    expires = NOW + timedelta(days=1)

    async def add_twice(uow: UnitOfWork) -> None:
        await uow.invalidated_tokens.add(tenant.id, "jti-1", expires, NOW)
        await uow.invalidated_tokens.add(tenant.id, "jti-1", expires, NOW)

    await write(storage, add_twice)
    await write(storage, lambda uow: uow.invalidated_tokens.add(tenant.id, "jti-1", expires, NOW))

    assert await read(storage, lambda uow: uow.invalidated_tokens.contains(tenant.id, "jti-1"))
    assert not await read(
        storage, lambda uow: uow.invalidated_tokens.contains(other_tenant.id, "jti-1")
    )
    assert not await read(storage, lambda uow: uow.invalidated_tokens.contains(tenant.id, "jti-2"))


async def test_racing_logouts_of_one_token_all_succeed(storage: Storage, tenant: Tenant) -> None:
    expires = NOW + timedelta(days=1)

    async def log_out() -> None:
        await write(
            storage, lambda uow: uow.invalidated_tokens.add(tenant.id, "jti-r", expires, NOW)
        )

    results = await race(RACERS, log_out)

    assert unexpected(results) == []
    assert await read(storage, lambda uow: uow.invalidated_tokens.contains(tenant.id, "jti-r"))


async def test_delete_expired_invalidated_tokens(storage: Storage, tenant: Tenant) -> None:
    async def add(uow: UnitOfWork) -> None:
        await uow.invalidated_tokens.add(tenant.id, "old", NOW - timedelta(seconds=1), NOW)
        await uow.invalidated_tokens.add(tenant.id, "live", NOW + timedelta(seconds=1), NOW)

    await write(storage, add)

    assert await write(storage, lambda uow: uow.invalidated_tokens.delete_expired(NOW)) == 1
    assert not await read(storage, lambda uow: uow.invalidated_tokens.contains(tenant.id, "old"))
    assert await read(storage, lambda uow: uow.invalidated_tokens.contains(tenant.id, "live"))


# --- outbox ---------------------------------------------------------------------

LEASE = timedelta(seconds=60)


async def claim(storage: Storage, now: datetime, limit: int = 10) -> list[OutboxItem]:
    return await write(storage, lambda uow: uow.outbox.claim_due(now, limit, LEASE))


async def pending(storage: Storage) -> int:
    return await read(storage, lambda uow: uow.outbox.pending_count())


async def test_outbox_claim_returns_the_message_and_leases_it(
    storage: Storage, tenant: Tenant
) -> None:
    mail = message()
    await write(storage, lambda uow: uow.outbox.add(tenant.id, mail, NOW))
    assert await pending(storage) == 1

    [item] = await claim(storage, NOW)
    assert (item.tenant_id, item.message, item.attempts) == (tenant.id, mail, 1)

    # Leased: nobody else gets it until the lease runs out.
    assert await claim(storage, NOW + LEASE / 2) == []
    [again] = await claim(storage, NOW + LEASE + timedelta(seconds=1))
    assert (again.id, again.message, again.attempts) == (item.id, mail, 2)
    assert await pending(storage) == 1


async def test_outbox_claims_only_due_messages_oldest_first_up_to_the_limit(
    storage: Storage, tenant: Tenant
) -> None:
    for offset in (2, 0, 1, 3):
        mail = message(subject=f"mail {offset}")
        await write(
            storage,
            functools.partial(
                _queue, tenant=tenant, mail=mail, now=NOW + timedelta(seconds=offset)
            ),
        )

    first = await claim(storage, NOW + timedelta(seconds=2), limit=2)
    assert [item.message.subject for item in first] == ["mail 0", "mail 1"]
    rest = await claim(storage, NOW + timedelta(seconds=2), limit=10)
    assert [item.message.subject for item in rest] == ["mail 2"]  # "mail 3" is not due yet


async def _queue(uow: UnitOfWork, *, tenant: Tenant, mail: EmailMessage, now: datetime) -> None:
    await uow.outbox.add(tenant.id, mail, now)


async def test_outbox_drops_every_message_to_one_address_and_only_those(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    sent, pending_one = message("Ada@Example.test", "code"), message("ada@example.test", "notice")
    kept = [(tenant, message("bob@example.test")), (other_tenant, message("ada@example.test"))]
    earlier = NOW - timedelta(seconds=1)
    await write(storage, functools.partial(_queue, tenant=tenant, mail=sent, now=earlier))
    for owner, mail in [(tenant, pending_one), *kept]:
        await write(storage, functools.partial(_queue, tenant=owner, mail=mail, now=NOW))
    [item] = await claim(storage, earlier, limit=1)
    assert item.message == sent
    await write(storage, lambda uow: uow.outbox.mark_sent(item.id, NOW))

    dropped = await write(
        storage, lambda uow: uow.outbox.delete_for_address(tenant.id, "ada@example.test")
    )

    assert dropped == 2  # the pending message and the record of the sent one
    left = await claim(storage, NOW + timedelta(seconds=1))
    assert {(i.tenant_id, i.message.to) for i in left} == {(o.id, m.to) for o, m in kept}
    assert len(left) == len(kept)


async def test_outbox_sent_message_is_never_claimed_again(storage: Storage, tenant: Tenant) -> None:
    await write(storage, lambda uow: uow.outbox.add(tenant.id, message(), NOW))
    [item] = await claim(storage, NOW)

    await write(storage, lambda uow: uow.outbox.mark_sent(item.id, NOW))

    assert await pending(storage) == 0
    assert await claim(storage, NOW + timedelta(days=1)) == []


async def test_outbox_failed_message_is_retried_at_the_time_given(
    storage: Storage, tenant: Tenant
) -> None:
    await write(storage, lambda uow: uow.outbox.add(tenant.id, message(), NOW))
    [item] = await claim(storage, NOW)
    retry_at = NOW + timedelta(minutes=5)

    await write(
        storage, lambda uow: uow.outbox.mark_failed(item.id, "SMTP 451 try later", retry_at)
    )

    assert await pending(storage) == 1
    assert await claim(storage, retry_at - timedelta(seconds=1)) == []
    [again] = await claim(storage, retry_at)
    assert (again.id, again.attempts) == (item.id, 2)


async def test_outbox_failed_message_without_retry_time_is_dead(
    storage: Storage, tenant: Tenant
) -> None:
    await write(storage, lambda uow: uow.outbox.add(tenant.id, message(), NOW))
    [item] = await claim(storage, NOW)

    await write(storage, lambda uow: uow.outbox.mark_failed(item.id, "SMTP 550 no such user", None))

    assert await pending(storage) == 0
    assert await claim(storage, NOW + timedelta(days=1)) == []


async def test_racing_claims_never_hand_one_message_to_two_workers(
    storage: Storage, tenant: Tenant
) -> None:
    total = 25

    async def queue_all(uow: UnitOfWork) -> None:
        for number in range(total):
            await uow.outbox.add(tenant.id, message(subject=f"mail {number}"), NOW)

    await write(storage, queue_all)

    results = await race(RACERS, lambda: claim(storage, NOW, limit=3))

    assert unexpected(results) == []
    claimed = [item.id for batch in results if isinstance(batch, list) for item in batch]
    assert len(claimed) == len(set(claimed))
    assert len(claimed) == total
    assert await claim(storage, NOW) == []


# --- the unit of work -------------------------------------------------------------


async def test_uncommitted_writes_are_invisible_to_others_and_discarded(
    storage: Storage, tenant: Tenant
) -> None:
    account = new_account(tenant, "draft@example.test")

    async def look() -> Account | None:
        return await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id))

    async with storage.uow() as writer:
        await writer.accounts.add(account)
        assert await writer.accounts.get(tenant.id, account.id) == account  # its own write
        reader = asyncio.create_task(look())
        if not storage.serialises_transactions:
            # Read while the writer is still open (SQLite's reader waits for it instead).
            assert await reader is None
    assert await reader is None
    assert await look() is None


async def test_an_error_inside_the_unit_of_work_discards_its_writes(
    storage: Storage, tenant: Tenant
) -> None:
    account = new_account(tenant)

    with pytest.raises(RuntimeError, match="boom"):
        async with storage.uow() as uow:
            await uow.accounts.add(account)
            raise RuntimeError("boom")

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id)) is None


async def test_commit_makes_writes_visible_and_later_writes_need_another(
    storage: Storage, tenant: Tenant
) -> None:
    kept, dropped = (
        new_account(tenant, "kept@example.test"),
        new_account(tenant, "drop@example.test"),
    )

    async with storage.uow() as uow:
        await uow.accounts.add(kept)
        await uow.commit()
        assert await read(storage, lambda other: other.accounts.get(tenant.id, kept.id)) == kept
        await uow.accounts.add(dropped)

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, kept.id)) == kept
    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, dropped.id)) is None


async def test_rollback_discards_and_the_unit_of_work_goes_on(
    storage: Storage, tenant: Tenant
) -> None:
    dropped, kept = (
        new_account(tenant, "drop@example.test"),
        new_account(tenant, "kept@example.test"),
    )

    async with storage.uow() as uow:
        await uow.accounts.add(dropped)
        await uow.rollback()
        assert await uow.accounts.get(tenant.id, dropped.id) is None
        await uow.accounts.add(kept)
        await uow.commit()

    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, dropped.id)) is None
    assert await read(storage, lambda uow: uow.accounts.get(tenant.id, kept.id)) == kept


# --- SQL only: what is stored at rest ------------------------------------------------


async def test_sql_outbox_stores_the_message_sealed_and_drops_it_once_handled(
    storage: Storage, tenant: Tenant
) -> None:
    if storage.engine is None:
        pytest.skip("the in-memory outbox keeps messages in clear by design")
    engine = storage.engine
    secret_subject = "Subject-7f3a9c"
    for number in range(2):
        mail = message(subject=f"{secret_subject} {number}")
        await write(storage, functools.partial(_queue, tenant=tenant, mail=mail, now=NOW))

    async def raw_rows() -> dict[uuid.UUID, Any]:
        async with engine.connect() as connection:
            rows = await connection.execute(select(t.outbox))
            return {row.id: row for row in rows}

    rows = await raw_rows()
    assert len(rows) == 2
    for row in rows.values():
        sealed = bytes(row.sealed_message)
        for clear in (secret_subject.encode(), CODE.encode(), b"alice@example.test", b"acme.test"):
            assert clear not in sealed
        assert row.state == "pending"

    sent, dead = await claim(storage, NOW)
    await write(storage, lambda uow: uow.outbox.mark_sent(sent.id, NOW))
    await write(storage, lambda uow: uow.outbox.mark_failed(dead.id, "SMTP 550", None))

    rows = await raw_rows()
    assert (rows[sent.id].state, rows[sent.id].sealed_message) == ("sent", None)
    assert rows[sent.id].sent_at == NOW
    assert (rows[dead.id].state, rows[dead.id].sealed_message) == ("dead", None)
    assert rows[dead.id].last_error == "SMTP 550"


async def test_sql_replace_leaves_one_challenge_row(storage: Storage, tenant: Tenant) -> None:
    if storage.engine is None:
        pytest.skip("row counts are a SQL matter")
    engine = storage.engine
    for _ in range(3):
        await write(storage, functools.partial(_replace, challenge=new_challenge(tenant)))

    async with engine.connect() as connection:
        count = (
            await connection.execute(select(func.count()).select_from(t.otp_challenges))
        ).scalar_one()
    assert count == 1


async def test_an_unreachable_database_raises_storage_unavailable(storage: Storage) -> None:
    if storage.engine is None:
        store = MemoryStore()
        store.available = False
        unreachable: UnitOfWorkFactory = memory_uow_factory(store)
    else:
        url = (
            "sqlite+aiosqlite:////nonexistent-directory/identity.db"
            if storage.kind == "sqlite"
            else "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"
        )
        engine = make_engine(url, pool_timeout=2.0)
        unreachable = functools.partial(SqlUnitOfWork, engine, Sealer(SECRET_KEY, "outbox"))
    threads_before = set(threading.enumerate())
    try:
        with pytest.raises(StorageUnavailableError):
            async with unreachable() as uow:
                await uow.tenants.get_by_slug("default")
    finally:
        if storage.engine is not None:
            await engine.dispose()
        # aiosqlite stops the thread of a connection that failed to open without
        # waiting for it; were the loop closed first, the thread's answer would
        # meet a closed loop (a warning in a later test).
        for thread in set(threading.enumerate()) - threads_before:
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 5)


# --- external identities and pending OAuth sign-ins -----------------------------------


def new_link(tenant: Tenant, account: Account, subject: str = "google-sub-1") -> LinkedIdentity:
    return LinkedIdentity(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        user_id=account.id,
        provider="google",
        subject=subject,
        email_at_link=account.email.value,
        created_at=NOW,
    )


async def test_external_identity_links_are_unique_per_tenant_provider_and_subject(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    alice_elsewhere = await add_account(storage, other_tenant)
    link = new_link(tenant, alice)
    await write(storage, lambda uow: uow.external_identities.add(link))

    async with storage.uow() as uow:
        with pytest.raises(IdentityAlreadyLinkedError):
            await uow.external_identities.add(new_link(tenant, bob))
        await uow.external_identities.add(new_link(other_tenant, alice_elsewhere))
        await uow.commit()

    assert (
        await read(
            storage, lambda uow: uow.external_identities.get(tenant.id, "google", "google-sub-1")
        )
        == link
    )
    assert (
        await read(storage, lambda uow: uow.external_identities.get(tenant.id, "google", "other"))
        is None
    )
    theirs = await read(
        storage, lambda uow: uow.external_identities.get(other_tenant.id, "google", "google-sub-1")
    )
    assert theirs is not None and theirs.user_id == alice_elsewhere.id


async def test_racing_first_sign_ins_link_one_identity(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)

    async def link() -> LinkedIdentity:
        mine = new_link(tenant, account)
        await write(storage, lambda uow: uow.external_identities.add(mine))
        return mine

    results = await race(RACERS, link)

    assert unexpected(results, IdentityAlreadyLinkedError) == []
    winners = [r for r in results if isinstance(r, LinkedIdentity)]
    assert len(winners) == 1
    stored = await read(
        storage, lambda uow: uow.external_identities.get(tenant.id, "google", "google-sub-1")
    )
    assert stored == winners[0]


def new_pending(tenant: Tenant, key: str = "k" * 64, **fields: Any) -> PendingSignIn:
    values: dict[str, Any] = {
        "key": key,
        "tenant_id": tenant.id,
        "provider": "google",
        "state_digest": "s" * 64,
        "nonce": "nonce-" + uuid.uuid4().hex,
        "code_verifier": "verifier-" + uuid.uuid4().hex,
        "redirect_to": "https://app.example.test/after",
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
    }
    values.update(fields)
    return PendingSignIn(**values)


async def test_pending_sign_in_is_taken_once(storage: Storage, tenant: Tenant) -> None:
    pending_sign_in = new_pending(tenant)
    await write(storage, lambda uow: uow.oauth_states.add(pending_sign_in))

    assert (
        await write(storage, lambda uow: uow.oauth_states.take(pending_sign_in.key))
        == pending_sign_in
    )
    assert await write(storage, lambda uow: uow.oauth_states.take(pending_sign_in.key)) is None
    assert await write(storage, lambda uow: uow.oauth_states.take("unknown")) is None


async def test_racing_callbacks_take_a_pending_sign_in_once(
    storage: Storage, tenant: Tenant
) -> None:
    pending_sign_in = new_pending(tenant)
    await write(storage, lambda uow: uow.oauth_states.add(pending_sign_in))

    results = await race(
        RACERS, lambda: write(storage, lambda uow: uow.oauth_states.take(pending_sign_in.key))
    )

    assert unexpected(results) == []
    assert [r for r in results if r is not None] == [pending_sign_in]


async def test_delete_expired_pending_sign_ins(storage: Storage, tenant: Tenant) -> None:
    expired = new_pending(tenant, "e" * 64, expires_at=NOW)
    live = new_pending(tenant, "l" * 64)

    async def add(uow: UnitOfWork) -> None:
        await uow.oauth_states.add(expired)
        await uow.oauth_states.add(live)

    await write(storage, add)

    assert await write(storage, lambda uow: uow.oauth_states.delete_expired(NOW)) == 1
    assert await write(storage, lambda uow: uow.oauth_states.take(expired.key)) is None
    assert await write(storage, lambda uow: uow.oauth_states.take(live.key)) == live


# --- advisory locks for periodic jobs ---------------------------------------------------


async def test_try_lock_is_held_by_one_transaction_at_a_time(storage: Storage) -> None:
    async def try_lock(name: str) -> bool:
        return await read(storage, lambda uow: uow.try_lock(name))

    async with storage.uow() as holder:
        assert await holder.try_lock("purge") is True
        assert await holder.try_lock("purge") is True  # its own lock again
        if not storage.serialises_transactions:
            # SQLite cannot run a second transaction meanwhile; it waits instead.
            assert await try_lock("purge") is False
            assert await try_lock("another job") is True
        await holder.commit()
        # Committing released it.
        assert await try_lock("purge") is True
        assert await holder.try_lock("purge") is True
    # So did leaving the block without committing.
    assert await try_lock("purge") is True


async def test_racing_try_locks_let_one_job_run(storage: Storage) -> None:
    if storage.serialises_transactions:
        pytest.skip("SQLite runs one transaction at a time: every racer gets the lock in turn")
    barrier = asyncio.Barrier(RACERS)
    all_tried, release = asyncio.Event(), asyncio.Event()
    tried = 0

    async def attempt() -> bool:
        nonlocal tried
        async with storage.uow() as uow:
            await barrier.wait()
            taken = await uow.try_lock("purge")
            tried += 1
            if tried == RACERS:
                all_tried.set()
            if taken:
                await release.wait()  # a winner holds the lock until every racer has tried
            return taken

    tasks = [asyncio.create_task(attempt()) for _ in range(RACERS)]
    async with asyncio.timeout(10):
        await all_tried.wait()
    release.set()
    results = await asyncio.gather(*tasks)
    assert sorted(results) == [False] * (RACERS - 1) + [True]


async def test_an_account_read_says_whether_google_is_linked(
    storage: Storage, tenant: Tenant
) -> None:
    linked = await add_account(storage, tenant, "linked@example.test")
    other_provider = await add_account(storage, tenant, "other@example.test")
    await write(storage, lambda uow: uow.external_identities.add(new_link(tenant, linked)))
    elsewhere = attrs.evolve(new_link(tenant, other_provider, "sub-2"), provider="github")
    await write(storage, lambda uow: uow.external_identities.add(elsewhere))

    # Derived from the links, not stored on the account: no account update was made.
    by_id = await read(storage, lambda uow: uow.accounts.get(tenant.id, linked.id))
    by_email = await read(
        storage, lambda uow: uow.accounts.get_by_email(tenant.id, linked.email.key)
    )
    assert by_id is not None and by_id.google_linked
    assert by_email is not None and by_email.google_linked
    plain = await read(storage, lambda uow: uow.accounts.get(tenant.id, other_provider.id))
    assert plain is not None and not plain.google_linked
    assert by_id.identities == ("google",) and plain.identities == ("github",)


async def test_an_account_has_one_identity_per_provider_listed_and_removable(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    google = new_link(tenant, account)
    github = attrs.evolve(
        new_link(tenant, account, "12345"),
        provider="github",
        created_at=NOW + timedelta(seconds=1),
    )
    await write(storage, lambda uow: uow.external_identities.add(github))
    await write(storage, lambda uow: uow.external_identities.add(google))

    second_google = new_link(tenant, account, "another-google-subject")
    with pytest.raises(IdentityInUseError):
        await write(storage, lambda uow: uow.external_identities.add(second_google))

    listed = await read(
        storage, lambda uow: uow.external_identities.list_for_account(tenant.id, account.id)
    )
    assert listed == [google, github]  # oldest first
    read_back = await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id))
    assert read_back is not None and read_back.identities == ("github", "google")
    assert (
        await read(
            storage,
            lambda uow: uow.external_identities.list_for_account(other_tenant.id, account.id),
        )
        == []
    )

    # Another tenant cannot remove it; then it goes once.
    assert not await write(
        storage, lambda uow: uow.external_identities.delete(other_tenant.id, google.id)
    )
    assert await write(storage, lambda uow: uow.external_identities.delete(tenant.id, google.id))
    assert not await write(
        storage, lambda uow: uow.external_identities.delete(tenant.id, google.id)
    )
    left = await read(
        storage, lambda uow: uow.external_identities.list_for_account(tenant.id, account.id)
    )
    assert left == [github]
    # With the old link gone, another subject at that provider may be linked.
    await write(storage, lambda uow: uow.external_identities.add(second_google))


async def test_links_made_at_once_to_one_account_are_all_in_its_provider_names(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    providers = [f"oidc_p{index}" for index in range(RACERS)]
    links = iter(
        attrs.evolve(new_link(tenant, account, f"sub-{name}"), provider=name) for name in providers
    )

    async def link() -> None:
        await write(storage, lambda uow: uow.external_identities.add(next(links)))

    results = await race(RACERS, link)

    assert [r for r in results if isinstance(r, BaseException)] == []
    read_back = await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id))
    assert read_back is not None and read_back.identities == tuple(sorted(providers))


async def test_a_pending_link_keeps_its_provider_and_user(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    pending = new_pending(tenant, provider="keycloak", link_user_id=account.id)
    await write(storage, lambda uow: uow.oauth_states.add(pending))

    taken = await write(storage, lambda uow: uow.oauth_states.take(pending.key))

    assert taken == pending
    assert taken is not None and taken.provider == "keycloak" and taken.link_user_id == account.id


async def test_an_expired_pending_sign_in_is_still_taken(storage: Storage, tenant: Tenant) -> None:
    expired = new_pending(tenant, expires_at=NOW - timedelta(minutes=1))
    await write(storage, lambda uow: uow.oauth_states.add(expired))

    # The caller tells "expired" from "unknown"; the row is gone either way.
    assert await write(storage, lambda uow: uow.oauth_states.take(expired.key)) == expired
    assert await write(storage, lambda uow: uow.oauth_states.take(expired.key)) is None


async def test_sql_pending_sign_in_keeps_the_pkce_verifier_sealed(
    storage: Storage, tenant: Tenant
) -> None:
    if storage.engine is None:
        pytest.skip("nothing is at rest in memory")
    engine = storage.engine
    pending_sign_in = new_pending(tenant)
    await write(storage, lambda uow: uow.oauth_states.add(pending_sign_in))

    async with engine.connect() as connection:
        [row] = list(await connection.execute(select(t.oauth_states)))
    assert pending_sign_in.code_verifier.encode() not in bytes(row.code_verifier)


# --- failed code checks and the code request queue -----------------------------------


async def test_record_failure_counts_a_try_or_stores_a_dead_placeholder(
    storage: Storage, tenant: Tenant
) -> None:
    live = new_challenge(tenant)
    await write(storage, lambda uow: uow.challenges.replace(live))
    ttl = timedelta(minutes=10)

    await write(
        storage,
        lambda uow: uow.challenges.record_failure(
            OtpChallenge.placeholder(tenant.id, live.email_key, live.purpose, NOW, ttl)
        ),
    )
    await write(
        storage,
        lambda uow: uow.challenges.record_failure(
            OtpChallenge.placeholder(tenant.id, "nobody@example.test", live.purpose, NOW, ttl)
        ),
    )

    counted = await read(
        storage, lambda uow: uow.challenges.get(tenant.id, live.email_key, live.purpose)
    )
    placeholder = await read(
        storage, lambda uow: uow.challenges.get(tenant.id, "nobody@example.test", live.purpose)
    )
    assert counted is not None and counted.id == live.id and counted.attempts == 1
    assert counted.code_digest == live.code_digest
    assert placeholder is not None and not placeholder.is_usable(NOW)
    assert placeholder.attempts == 1 and placeholder.max_attempts == 0
    assert placeholder.expires_at == NOW + ttl and placeholder.code_digest == ""


async def test_concurrent_failures_are_all_counted(storage: Storage, tenant: Tenant) -> None:
    key = (tenant.id, "racer@example.test", OtpPurpose.LOGIN)

    async def fail() -> None:
        placeholder = OtpChallenge.placeholder(*key, NOW, timedelta(minutes=10))
        await write(storage, lambda uow: uow.challenges.record_failure(placeholder))

    assert errors(await race(RACERS, fail)) == []
    stored = await read(storage, lambda uow: uow.challenges.get(*key))
    assert stored is not None and stored.attempts == RACERS


def new_code_request(tenant: Tenant, minutes: int = 0, **fields: Any) -> CodeRequest:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "email": Email("alice@example.test"),
        "purpose": OtpPurpose.LOGIN,
        "requested_at": NOW + timedelta(minutes=minutes),
    }
    values.update(fields)
    return CodeRequest(**values)


async def test_code_requests_round_trip_oldest_first(storage: Storage, tenant: Tenant) -> None:
    later = new_code_request(
        tenant, 1, purpose=OtpPurpose.VERIFICATION, registration=Registration("$hash", "Alice")
    )
    earlier = new_code_request(tenant, 0)
    for request in (later, earlier):
        await write(storage, functools.partial(_add_request, request=request))

    assert await write(storage, lambda uow: uow.code_requests.take_next()) == earlier
    assert await write(storage, lambda uow: uow.code_requests.take_next()) == later
    assert await write(storage, lambda uow: uow.code_requests.take_next()) is None


async def test_a_code_request_taken_in_a_rolled_back_transaction_stays(
    storage: Storage, tenant: Tenant
) -> None:
    request = new_code_request(tenant)
    await write(storage, functools.partial(_add_request, request=request))

    assert await read(storage, lambda uow: uow.code_requests.take_next()) == request  # no commit

    assert await write(storage, lambda uow: uow.code_requests.take_next()) == request


async def test_concurrent_workers_each_take_a_different_request(
    storage: Storage, tenant: Tenant
) -> None:
    requests = [new_code_request(tenant, minutes) for minutes in range(RACERS)]
    for request in requests:
        await write(storage, functools.partial(_add_request, request=request))

    taken = await race(RACERS, lambda: write(storage, lambda uow: uow.code_requests.take_next()))

    assert errors(taken) == []
    assert sorted(r.id for r in taken if r is not None) == sorted(r.id for r in requests)


async def test_code_requests_of_one_address_are_dropped_and_only_those(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    ada = [
        new_code_request(tenant, 0, email=Email("Ada@example.test")),
        new_code_request(
            tenant,
            1,
            purpose=OtpPurpose.VERIFICATION,
            registration=Registration("$hash", "Ada"),
            email=Email("ada@example.test"),
        ),
    ]
    others = [
        new_code_request(tenant, 2, email=Email("bob@example.test")),
        new_code_request(other_tenant, 3, email=Email("ada@example.test")),
    ]
    for request in [*ada, *others]:
        await write(storage, functools.partial(_add_request, request=request))

    dropped = await write(
        storage, lambda uow: uow.code_requests.delete_for_address(tenant.id, "ada@example.test")
    )

    assert dropped == len(ada)
    assert await write(storage, lambda uow: uow.code_requests.take_next()) == others[0]
    assert await write(storage, lambda uow: uow.code_requests.take_next()) == others[1]
    assert await write(storage, lambda uow: uow.code_requests.take_next()) is None


async def test_dropping_an_address_skips_the_request_a_worker_is_taking(
    storage: Storage, tenant: Tenant
) -> None:
    if storage.serialises_transactions:
        pytest.skip("SQLite runs one transaction at a time: the worker's ends first")
    taken, waiting = new_code_request(tenant, 0), new_code_request(tenant, 1)
    for request in (taken, waiting):
        await write(storage, functools.partial(_add_request, request=request))

    async with storage.uow() as worker:
        assert await worker.code_requests.take_next() == taken  # held until it commits
        async with asyncio.timeout(5):  # never waits for the worker
            dropped = await write(
                storage,
                lambda uow: uow.code_requests.delete_for_address(tenant.id, "alice@example.test"),
            )
        await worker.commit()

    assert dropped == 1
    assert await write(storage, lambda uow: uow.code_requests.take_next()) is None


async def _add_request(uow: UnitOfWork, request: CodeRequest) -> None:
    await uow.code_requests.add(request)


def errors(results: list[Any]) -> list[BaseException]:
    return [result for result in results if isinstance(result, BaseException)]


# --- security events -------------------------------------------------------------


def new_event(
    tenant: Tenant, type: EventType, at: datetime, user_id: uuid.UUID | None = None
) -> SecurityEvent:
    return SecurityEvent.new(
        type, tenant.id, at, user_id=user_id, ip="198.51.100.4", user_agent="ua", reason="x"
    )


async def test_events_are_listed_newest_first_with_filters_and_cursor(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    ada, bob = uuid.uuid4(), uuid.uuid4()
    made = [
        new_event(tenant, EventType.LOGIN_FAILED, NOW + timedelta(seconds=i), ada if i % 2 else bob)
        for i in range(5)
    ]
    async with storage.uow() as uow:
        for event in made:
            await uow.events.add(event)
        await uow.events.add(new_event(other_tenant, EventType.USER_CREATED, NOW, ada))
        await uow.commit()

    async with storage.uow() as uow:
        everything = await uow.events.list(tenant.id, limit=10)
        adas = await uow.events.list(tenant.id, limit=10, user_id=ada)
        created = await uow.events.list(tenant.id, limit=10, type=EventType.USER_CREATED)
        first = await uow.events.list(tenant.id, limit=2)
        last = first[-1]
        rest = await uow.events.list(
            tenant.id, limit=10, before=Position(last.occurred_at, last.id)
        )
    assert everything == list(reversed(made))  # exactly what was stored, newest first
    assert [e.id for e in adas] == [made[3].id, made[1].id]
    assert created == []
    assert [e.id for e in first + rest] == [e.id for e in everything]


async def test_an_event_is_kept_only_if_its_transaction_commits(
    storage: Storage, tenant: Tenant
) -> None:
    async with storage.uow() as uow:
        await uow.events.add(new_event(tenant, EventType.PASSWORD_CHANGED, NOW))
        await uow.rollback()
        await uow.events.add(new_event(tenant, EventType.PASSWORD_RESET, NOW))
    async with storage.uow() as uow:
        assert await uow.events.list(tenant.id, limit=10) == []


async def test_old_events_are_purged(storage: Storage, tenant: Tenant) -> None:
    old = new_event(tenant, EventType.LOGIN_FAILED, NOW - timedelta(days=91))
    recent = new_event(tenant, EventType.LOGIN_FAILED, NOW - timedelta(days=1))
    async with storage.uow() as uow:
        await uow.events.add(old)
        await uow.events.add(recent)
        await uow.commit()
    async with storage.uow() as uow:
        assert await uow.events.delete_older_than(NOW - timedelta(days=90)) == 1
        await uow.commit()
    async with storage.uow() as uow:
        assert [e.id for e in await uow.events.list(tenant.id, limit=10)] == [recent.id]


async def test_events_outlive_their_user(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    event = new_event(tenant, EventType.USER_DELETED, NOW, account.id)
    async with storage.uow() as uow:
        await uow.events.add(event)
        await uow.commit()
    async with storage.uow() as uow:
        assert await uow.accounts.delete(tenant.id, account.id)
        await uow.commit()
    async with storage.uow() as uow:
        assert await uow.events.list(tenant.id, limit=10) == [event]


# --- webhooks and their delivery queue -------------------------------------------


def new_webhook(tenant: Tenant, *types: EventType) -> Webhook:
    return Webhook(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        url="https://hooks.example.test/in",
        event_types=frozenset(types),
        secret="whsec_" + "A" * 43 + "=",
        created_at=NOW,
    )


async def claim_deliveries(storage: Storage, now: datetime, limit: int = 50) -> list[DueDelivery]:
    async def run(uow: UnitOfWork) -> list[DueDelivery]:
        return await uow.webhook_deliveries.claim_due(now, limit, timedelta(seconds=60))

    return await write(storage, run)


async def test_an_event_queues_one_delivery_per_subscribed_webhook_of_its_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    logins = new_webhook(tenant, EventType.LOGIN_FAILED, EventType.USER_CREATED)
    others = new_webhook(tenant, EventType.PASSWORD_RESET)
    foreign = new_webhook(other_tenant, EventType.LOGIN_FAILED)
    event = new_event(tenant, EventType.LOGIN_FAILED, NOW)

    async def setup(uow: UnitOfWork) -> None:
        for hook in (logins, others, foreign):
            await uow.webhooks.add(hook)
        await uow.events.add(event)

    await write(storage, setup)

    [due] = await claim_deliveries(storage, NOW)
    assert due.webhook == logins  # secrets come back unsealed
    assert due.event == event and due.tenant_slug == "acme"
    assert due.delivery.attempts == 1 and due.delivery.status is DeliveryStatus.PENDING
    assert await claim_deliveries(storage, NOW) == []  # leased


async def test_recorded_outcomes_settle_deliveries_and_stale_ones_are_ignored(
    storage: Storage, tenant: Tenant
) -> None:
    hook = new_webhook(tenant, EventType.LOGIN_FAILED)

    async def setup(uow: UnitOfWork) -> None:
        await uow.webhooks.add(hook)
        for second in range(3):
            await uow.events.add(
                new_event(tenant, EventType.LOGIN_FAILED, NOW + timedelta(seconds=second))
            )

    await write(storage, setup)
    ok, retry, dead = await claim_deliveries(storage, NOW + timedelta(seconds=5))
    later = NOW + timedelta(minutes=1)
    outcomes = [
        DeliveryOutcome(ok.delivery.id, 1, later, 204, None),
        DeliveryOutcome(retry.delivery.id, 1, later, 500, "answered 500", retry_at=later),
        DeliveryOutcome(dead.delivery.id, 1, later, None, "timed out"),
        # A worker whose lease was taken over reports an older attempt: ignored.
        DeliveryOutcome(ok.delivery.id, 0, later, 500, "stale"),
    ]
    await write(storage, lambda uow: uow.webhook_deliveries.record(outcomes))

    listed = await read(
        storage, lambda uow: uow.webhook_deliveries.list_for_webhook(hook.id, limit=10)
    )
    by_id = {item.id: item for item in listed}
    assert by_id[ok.delivery.id].status is DeliveryStatus.DELIVERED
    assert by_id[ok.delivery.id].last_status_code == 204
    assert by_id[retry.delivery.id].status is DeliveryStatus.PENDING
    assert by_id[retry.delivery.id].next_attempt_at == later
    assert by_id[dead.delivery.id].status is DeliveryStatus.FAILED
    assert by_id[dead.delivery.id].last_error == "timed out"
    [again] = await claim_deliveries(storage, later)
    assert again.delivery.id == retry.delivery.id and again.delivery.attempts == 2
    assert await read(storage, lambda uow: uow.webhook_deliveries.pending_count()) == 1


async def test_racing_delivery_claims_never_hand_one_attempt_to_two_workers(
    storage: Storage, tenant: Tenant
) -> None:
    total = 25
    hook = new_webhook(tenant, EventType.LOGIN_FAILED)

    async def setup(uow: UnitOfWork) -> None:
        await uow.webhooks.add(hook)
        for _ in range(total):
            await uow.events.add(new_event(tenant, EventType.LOGIN_FAILED, NOW))

    await write(storage, setup)
    results = await race(RACERS, lambda: claim_deliveries(storage, NOW, limit=3))

    assert unexpected(results) == []
    claimed = [due.delivery.id for batch in results if isinstance(batch, list) for due in batch]
    assert len(claimed) == len(set(claimed)) == total


async def test_deleting_a_webhook_drops_its_deliveries(storage: Storage, tenant: Tenant) -> None:
    hook = new_webhook(tenant, EventType.LOGIN_FAILED)

    async def setup(uow: UnitOfWork) -> None:
        await uow.webhooks.add(hook)
        await uow.events.add(new_event(tenant, EventType.LOGIN_FAILED, NOW))

    await write(storage, setup)
    assert await write(storage, lambda uow: uow.webhooks.delete(tenant.id, hook.id))
    assert not await write(storage, lambda uow: uow.webhooks.delete(tenant.id, hook.id))
    assert await claim_deliveries(storage, NOW) == []


async def test_sql_a_webhook_sealed_under_another_secret_fails_without_blocking_the_queue(
    storage: Storage, tenant: Tenant
) -> None:
    if storage.engine is None:
        pytest.skip("the in-memory store seals nothing")
    engine = storage.engine
    foreign = functools.partial(SqlUnitOfWork, engine, Sealer("another-secret-" * 3, "outbox"))
    lost, fine = (
        new_webhook(tenant, EventType.LOGIN_FAILED),
        new_webhook(tenant, EventType.LOGIN_FAILED),
    )
    async with foreign() as uow:
        await uow.webhooks.add(lost)
        await uow.commit()
    await write(storage, lambda uow: uow.webhooks.add(fine))
    await write(storage, lambda uow: uow.events.add(new_event(tenant, EventType.LOGIN_FAILED, NOW)))

    [due] = await claim_deliveries(storage, NOW)
    assert due.webhook.id == fine.id
    [failed] = await read(
        storage, lambda uow: uow.webhook_deliveries.list_for_webhook(lost.id, limit=10)
    )
    assert failed.status is DeliveryStatus.FAILED and "unsealed" in (failed.last_error or "")
