"""The MFA repositories' contract, on the in-memory store, SQLite and PostgreSQL alike.

Races are real: many tasks with a unit of work each, released by one barrier.
The storage fixtures are those of ``test_repository_contract``, imported by name
(pytest finds them here; ruff sees the test arguments as redefinitions).
"""

# ruff: noqa: F811

from __future__ import annotations

import uuid
from datetime import timedelta

import attrs
import pytest
from sqlalchemy import select

from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import UnitOfWork
from identity.domain.accounts import Account
from identity.domain.mfa import (
    Amr,
    MfaAlreadyEnabledError,
    MfaChallenge,
    RecoveryCode,
    TotpFactor,
)
from identity.domain.tenants import Tenant
from tests.integration.test_repository_contract import (  # noqa: F401 (fixtures)
    NOW,
    RACERS,
    Storage,
    add_account,
    add_sessions,
    contract_postgres_url,
    new_session,
    other_tenant,
    race,
    read,
    storage,
    storage_url,
    tenant,
    unexpected,
    write,
)

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def new_factor(account: Account, **fields: object) -> TotpFactor:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": account.tenant_id,
        "user_id": account.id,
        "secret": SECRET,
        "created_at": NOW,
    }
    values.update(fields)
    return TotpFactor(**values)  # type: ignore[arg-type]


def new_codes(account: Account, *digests: str) -> list[RecoveryCode]:
    return [
        RecoveryCode(uuid.uuid4(), account.tenant_id, account.id, digest, NOW) for digest in digests
    ]


async def confirmed_factor(storage: Storage, account: Account) -> TotpFactor:
    factor = new_factor(account)
    await write(storage, lambda uow: uow.totp_factors.replace_pending(factor))
    confirmed = attrs.evolve(factor, confirmed_at=NOW, last_used_step=100)
    assert await write(storage, lambda uow: uow.totp_factors.record_use(confirmed, None))
    return confirmed


async def test_a_factor_is_pending_until_confirmed_then_cannot_be_replaced(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    first, second = new_factor(account), new_factor(account, secret="KRSXG5CTMVRXEZLU")
    await write(storage, lambda uow: uow.totp_factors.replace_pending(first))
    await write(storage, lambda uow: uow.totp_factors.replace_pending(second))

    found = await read(storage, lambda uow: uow.totp_factors.get(tenant.id, account.id))
    assert found == second
    assert (
        await read(storage, lambda uow: uow.totp_factors.get(other_tenant.id, account.id)) is None
    )

    confirmed = attrs.evolve(second, confirmed_at=NOW, last_used_step=7)
    assert await write(storage, lambda uow: uow.totp_factors.record_use(confirmed, None))
    assert await read(storage, lambda uow: uow.totp_factors.get(tenant.id, account.id)) == confirmed
    with pytest.raises(MfaAlreadyEnabledError):
        await write(storage, lambda uow: uow.totp_factors.replace_pending(new_factor(account)))
    assert (
        await write(storage, lambda uow: uow.totp_factors.delete_for_account(tenant.id, account.id))
        == 1
    )
    assert await read(storage, lambda uow: uow.totp_factors.get(tenant.id, account.id)) is None


async def test_racing_uses_of_one_step_let_one_through(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    factor = await confirmed_factor(storage, account)
    used = attrs.evolve(factor, last_used_step=101)

    async def attempt() -> bool:
        async with storage.uow() as uow:
            won = await uow.totp_factors.record_use(used, 100)
            await uow.commit()
            return won

    results = await race(RACERS, attempt)
    assert not unexpected(results)
    assert results.count(True) == 1
    stored = await read(storage, lambda uow: uow.totp_factors.get(tenant.id, account.id))
    assert stored is not None and stored.last_used_step == 101


async def test_recovery_codes_are_used_once_and_replaced_as_a_set(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)

    async def use(uow: UnitOfWork, digest: str, tenant_id: uuid.UUID = tenant.id) -> bool:
        return await uow.recovery_codes.use(tenant_id, account.id, digest, NOW)

    await write(
        storage,
        lambda uow: uow.recovery_codes.replace_all(
            tenant.id, account.id, new_codes(account, "a", "b")
        ),
    )
    assert not await write(storage, lambda uow: use(uow, "a", other_tenant.id))
    assert await write(storage, lambda uow: use(uow, "a"))
    assert not await write(storage, lambda uow: use(uow, "a"))
    assert (
        await read(storage, lambda uow: uow.recovery_codes.count_unused(tenant.id, account.id)) == 1
    )

    await write(
        storage,
        lambda uow: uow.recovery_codes.replace_all(tenant.id, account.id, new_codes(account, "c")),
    )
    assert not await write(storage, lambda uow: use(uow, "b"))
    assert (
        await read(storage, lambda uow: uow.recovery_codes.count_unused(tenant.id, account.id)) == 1
    )

    async def attempt() -> bool:
        return await write(storage, lambda uow: use(uow, "c"))

    results = await race(RACERS, attempt)
    assert not unexpected(results)
    assert results.count(True) == 1


async def test_an_mfa_challenge_is_checked_once_and_expires(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    challenge = MfaChallenge(
        key="k" * 64,
        tenant_id=tenant.id,
        user_id=account.id,
        first_factor=Amr.PASSWORD,
        user_agent="agent",
        ip="203.0.113.7",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
    )
    await write(storage, lambda uow: uow.mfa_challenges.add(challenge))
    assert (
        await read(storage, lambda uow: uow.mfa_challenges.get(tenant.id, challenge.key))
        == challenge
    )
    assert (
        await read(storage, lambda uow: uow.mfa_challenges.get(other_tenant.id, challenge.key))
        is None
    )

    failed = attrs.evolve(challenge, attempts=1)
    assert await write(storage, lambda uow: uow.mfa_challenges.record_check(failed, 0))
    assert not await write(storage, lambda uow: uow.mfa_challenges.record_check(failed, 0))
    spent = attrs.evolve(failed, consumed_at=NOW)

    async def attempt() -> bool:
        return await write(storage, lambda uow: uow.mfa_challenges.record_check(spent, 1))

    results = await race(RACERS, attempt)
    assert not unexpected(results)
    assert results.count(True) == 1

    assert (
        await write(
            storage, lambda uow: uow.mfa_challenges.delete_expired(NOW + timedelta(minutes=4))
        )
        == 0
    )
    assert (
        await write(
            storage, lambda uow: uow.mfa_challenges.delete_expired(NOW + timedelta(minutes=5))
        )
        == 1
    )


async def test_sessions_keep_their_assurance_and_accounts_their_mfa_flag(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    live = new_session(tenant, account, amr=("pwd",))
    ended = new_session(tenant, account, revoked_at=NOW, revoked_reason="logout")
    await add_sessions(storage, live, ended)
    stored = await read(storage, lambda uow: uow.sessions.get(tenant.id, live.id))
    assert stored is not None and (stored.aal, stored.amr) == ("aal1", ("pwd",))

    for session in (live, ended):
        session.step_up("totp")
    assert await write(storage, lambda uow: uow.sessions.set_assurance(live))
    assert not await write(storage, lambda uow: uow.sessions.set_assurance(ended))
    stored = await read(storage, lambda uow: uow.sessions.get(tenant.id, live.id))
    assert stored is not None and (stored.aal, stored.amr) == ("aal2", ("pwd", "totp"))

    async def enable(uow: UnitOfWork) -> None:
        current = await uow.accounts.get(tenant.id, account.id)
        assert current is not None and not current.mfa_enabled
        current.mfa_enabled = True
        await uow.accounts.update(current)

    await write(storage, enable)
    again = await read(storage, lambda uow: uow.accounts.get(tenant.id, account.id))
    assert again is not None and again.mfa_enabled
    reader_sees = await storage.session_reader.account_for_session(
        tenant.id, live.id, account.id, NOW
    )
    assert reader_sees is not None and reader_sees.mfa_enabled


async def test_sql_keeps_the_totp_secret_sealed(storage: Storage, tenant: Tenant) -> None:
    if storage.engine is None:
        pytest.skip("the memory store keeps nothing outside the process")
    account = await add_account(storage, tenant)
    await confirmed_factor(storage, account)
    async with storage.engine.connect() as connection:
        stored = (await connection.execute(select(t.totp_factors.c.secret))).scalar_one()
    assert SECRET.encode() not in stored
