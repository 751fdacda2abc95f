"""The passkey and WebAuthn flow repositories' contract, on memory, SQLite and PostgreSQL.

Races are real: many tasks with a unit of work each, released by one barrier.
The storage fixtures are those of ``test_repository_contract``.
"""

# ruff: noqa: F811

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import attrs

from identity.application.ports import UnitOfWork
from identity.domain.accounts import Account
from identity.domain.passkeys import (
    Ceremony,
    Passkey,
    PasskeyExistsError,
    WebAuthnFlow,
)
from identity.domain.tenants import Tenant
from tests.integration.test_repository_contract import (  # noqa: F401 (fixtures)
    NOW,
    RACERS,
    Storage,
    add_account,
    contract_postgres_url,
    other_tenant,
    race,
    read,
    storage,
    storage_url,
    tenant,
    unexpected,
    write,
)


def new_passkey(account: Account, credential_id: bytes | None = None, **fields: object) -> Passkey:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": account.tenant_id,
        "user_id": account.id,
        "credential_id": credential_id or os.urandom(32),
        "public_key": b"\xa5\x01\x02cose-key",
        "sign_count": 0,
        "transports": ("internal", "hybrid"),
        "backup_eligible": True,
        "backed_up": True,
        "aaguid": "00000000-0000-0000-0000-000000000000",
        "name": "Laptop",
        "created_at": NOW,
    }
    values.update(fields)
    return Passkey(**values)  # type: ignore[arg-type]


def new_flow(tenant: Tenant, account: Account | None = None, **fields: object) -> WebAuthnFlow:
    values: dict[str, object] = {
        "key": uuid.uuid4().hex,
        "tenant_id": tenant.id,
        "ceremony": Ceremony.REGISTRATION,
        "user_id": account.id if account else None,
        "email_bound": False,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
    }
    values.update(fields)
    return WebAuthnFlow(**values)  # type: ignore[arg-type]


async def add(storage: Storage, passkey: Passkey) -> Passkey:
    await write(storage, lambda uow: uow.passkeys.add(passkey))
    return passkey


async def test_a_passkey_round_trips_by_id_and_credential_within_its_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    passkey = await add(storage, new_passkey(account, b"\x00\x01binary\xff"))

    assert await read(storage, lambda uow: uow.passkeys.get(tenant.id, passkey.id)) == passkey
    found = await read(
        storage, lambda uow: uow.passkeys.get_by_credential(tenant.id, b"\x00\x01binary\xff")
    )
    assert found == passkey
    assert await read(storage, lambda uow: uow.passkeys.get(other_tenant.id, passkey.id)) is None
    assert (
        await read(
            storage,
            lambda uow: uow.passkeys.get_by_credential(other_tenant.id, b"\x00\x01binary\xff"),
        )
        is None
    )


async def test_a_credential_id_is_unique_within_a_tenant_even_racing(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    credential = os.urandom(32)

    async def attempt() -> None:
        await write(storage, lambda uow: uow.passkeys.add(new_passkey(alice, credential)))

    results = await race(RACERS, attempt)

    assert unexpected(results, PasskeyExistsError) == []
    assert sum(1 for result in results if result is None) == 1
    try:
        await add(storage, new_passkey(bob, credential))
    except PasskeyExistsError:
        pass
    else:
        raise AssertionError("a second account registered the same credential")
    # Another tenant is another relying party's world.
    stranger = await add_account(storage, other_tenant)
    await add(storage, new_passkey(stranger, credential))


async def test_lists_are_oldest_first_and_by_email_in_one_read(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    newer = await add(storage, new_passkey(alice, created_at=NOW + timedelta(seconds=2)))
    older = await add(storage, new_passkey(alice, created_at=NOW))
    await add(storage, new_passkey(bob))
    namesake = await add_account(storage, other_tenant)
    await add(storage, new_passkey(namesake))

    mine = await read(storage, lambda uow: uow.passkeys.list_for_account(tenant.id, alice.id))
    assert [p.id for p in mine] == [older.id, newer.id]
    by_email = await read(
        storage, lambda uow: uow.passkeys.list_for_email(tenant.id, "alice@example.test")
    )
    assert [p.id for p in by_email] == [older.id, newer.id]
    assert (
        await read(
            storage, lambda uow: uow.passkeys.list_for_email(tenant.id, "nobody@example.test")
        )
        == []
    )
    assert await read(storage, lambda uow: uow.passkeys.count_for_account(tenant.id, alice.id)) == 2
    counts = await read(
        storage,
        lambda uow: uow.passkeys.count_for_accounts(tenant.id, [alice.id, bob.id, namesake.id]),
    )
    assert counts == {alice.id: 2, bob.id: 1}
    assert await read(storage, lambda uow: uow.passkeys.count_for_accounts(tenant.id, [])) == {}


async def test_rename_and_delete_touch_only_the_tenants_passkey(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    passkey = await add(storage, new_passkey(account))

    renamed = attrs.evolve(passkey, name="Phone")
    assert await write(storage, lambda uow: uow.passkeys.rename(renamed))
    stored = await read(storage, lambda uow: uow.passkeys.get(tenant.id, passkey.id))
    assert stored is not None and stored.name == "Phone"
    assert not await write(storage, lambda uow: uow.passkeys.delete(other_tenant.id, passkey.id))
    assert await write(storage, lambda uow: uow.passkeys.delete(tenant.id, passkey.id))
    assert not await write(storage, lambda uow: uow.passkeys.delete(tenant.id, passkey.id))
    assert not await write(storage, lambda uow: uow.passkeys.rename(renamed))


async def test_one_sign_in_per_counter_value_wins_a_race(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    passkey = await add(storage, new_passkey(account, sign_count=5))
    used = attrs.evolve(passkey, sign_count=6, backed_up=False, last_used_at=NOW)

    async def attempt() -> bool:
        return await write(storage, lambda uow: uow.passkeys.record_sign_in(used, 5))

    results = await race(RACERS, attempt)

    assert unexpected(results) == []
    assert results.count(True) == 1
    stored = await read(storage, lambda uow: uow.passkeys.get(tenant.id, passkey.id))
    assert stored is not None
    assert (stored.sign_count, stored.backed_up, stored.last_used_at) == (6, False, NOW)


async def test_a_user_handle_is_made_once_per_account_even_racing(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)

    async def attempt() -> bytes:
        return await write(
            storage, lambda uow: uow.passkeys.user_handle(tenant.id, account.id, os.urandom(32))
        )

    results = await race(RACERS, attempt)

    assert unexpected(results) == []
    assert len(set(results)) == 1
    again = await write(storage, lambda uow: uow.passkeys.user_handle(tenant.id, account.id, b"x"))
    assert again == results[0]


async def test_a_flow_is_taken_once_even_racing(storage: Storage, tenant: Tenant) -> None:
    account = await add_account(storage, tenant)
    flow = new_flow(tenant, account)
    await write(storage, lambda uow: uow.webauthn_flows.add(flow))

    async def attempt() -> WebAuthnFlow | None:
        return await write(storage, lambda uow: uow.webauthn_flows.take(flow.key))

    results = await race(RACERS, attempt)

    assert unexpected(results) == []
    assert [result for result in results if result is not None] == [flow]


async def test_a_login_flow_without_an_account_round_trips(
    storage: Storage, tenant: Tenant
) -> None:
    flow = new_flow(tenant, None, ceremony=Ceremony.AUTHENTICATION, email_bound=True)
    await write(storage, lambda uow: uow.webauthn_flows.add(flow))

    assert await write(storage, lambda uow: uow.webauthn_flows.take(flow.key)) == flow


async def test_expired_flows_are_purged(storage: Storage, tenant: Tenant) -> None:
    live = new_flow(tenant, None, expires_at=NOW + timedelta(minutes=5))
    dead = new_flow(tenant, None, expires_at=NOW - timedelta(seconds=1))
    for flow in (live, dead):
        await write(storage, lambda uow, flow=flow: uow.webauthn_flows.add(flow))

    assert await write(storage, lambda uow: uow.webauthn_flows.delete_expired(NOW)) == 1
    assert await write(storage, lambda uow: uow.webauthn_flows.take(live.key)) == live
    assert await write(storage, lambda uow: uow.webauthn_flows.take(dead.key)) is None


async def test_erasing_the_account_erases_its_passkeys_handle_and_flows(
    storage: Storage, tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    passkey = await add(storage, new_passkey(account))
    handle = await write(storage, lambda uow: uow.passkeys.user_handle(tenant.id, account.id, b"h"))
    flow = new_flow(tenant, account)
    await write(storage, lambda uow: uow.webauthn_flows.add(flow))

    assert await write(storage, lambda uow: uow.accounts.delete(tenant.id, account.id))

    async def gone(uow: UnitOfWork) -> tuple[object, object]:
        return (
            await uow.passkeys.get(tenant.id, passkey.id),
            await uow.webauthn_flows.take(flow.key),
        )

    assert await read(storage, gone) == (None, None)
    assert handle == b"h"


async def test_a_sign_in_reads_the_passkey_with_its_account_and_handle(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    account = await add_account(storage, tenant)
    passkey = await add(storage, new_passkey(account, b"cred-1"))

    found = await read(storage, lambda uow: uow.passkeys.get_for_sign_in(tenant.id, b"cred-1"))
    assert found is not None
    assert (found.passkey, found.user_handle) == (passkey, None)
    assert found.account.id == account.id and found.account.email == account.email
    assert found.account.created_at == account.created_at and found.account.is_active
    await write(storage, lambda uow: uow.passkeys.user_handle(tenant.id, account.id, b"h" * 32))
    found = await read(storage, lambda uow: uow.passkeys.get_for_sign_in(tenant.id, b"cred-1"))
    assert found is not None and found.user_handle == b"h" * 32
    assert (
        await read(storage, lambda uow: uow.passkeys.get_for_sign_in(other_tenant.id, b"cred-1"))
        is None
    )
