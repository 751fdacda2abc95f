"""The in-memory unit of work keeps the transaction semantics the use cases rely on."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.adapters.memory import (
    MemoryDeadlockError,
    MemoryStore,
    MemoryUnitOfWork,
    memory_uow_factory,
)
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    EmailAlreadyRegisteredError,
    StorageUnavailableError,
    TenantAlreadyExistsError,
)
from identity.domain.external_sign_in import (
    IdentityAlreadyLinkedError,
    LinkedIdentity,
    PendingSignIn,
)
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TENANT = uuid.uuid4()


def _account(email: str = "ada@example.com", tenant_id: uuid.UUID = TENANT) -> Account:
    return Account(
        id=uuid.uuid4(), tenant_id=tenant_id, email=Email(email), created_at=T0, updated_at=T0
    )


def _session(user_id: uuid.UUID, jti: str = "jti-1", ttl: timedelta = timedelta(days=1)) -> Session:
    return Session(
        id=uuid.uuid4(),
        tenant_id=TENANT,
        user_id=user_id,
        created_at=T0,
        last_used_at=T0,
        refresh_jti=jti,
        refresh_issued_at=T0,
        expires_at=T0 + ttl,
    )


async def _add_session(uow: MemoryUnitOfWork, session: Session) -> None:
    """A session needs its active account (as the SQL foreign key and login check do)."""
    if await uow.accounts.get(TENANT, session.user_id) is None:
        await uow.accounts.add(
            Account(
                id=session.user_id,
                tenant_id=TENANT,
                email=Email(f"{session.user_id.hex}@example.com"),
                created_at=T0,
                updated_at=T0,
            )
        )
    assert await uow.sessions.add(session)


def _message(to: str = "ada@example.com") -> EmailMessage:
    return EmailMessage(to=to, subject="s", text="t", html="h", sender="id@example.test")


async def _get(store: MemoryStore, account_id: uuid.UUID) -> Account | None:
    async with MemoryUnitOfWork(store) as uow:
        return await uow.accounts.get(TENANT, account_id)


async def test_writes_are_seen_by_others_only_after_commit() -> None:
    store = MemoryStore()
    account = _account()
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(account)
        assert await uow.accounts.get(TENANT, account.id) == account  # own writes
        assert await _get(store, account.id) is None
        await uow.commit()
        assert await _get(store, account.id) == account


async def test_leaving_without_commit_discards() -> None:
    store = MemoryStore()
    account = _account()
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(account)
    assert await _get(store, account.id) is None


async def test_an_error_inside_discards() -> None:
    store = MemoryStore()
    account = _account()
    with pytest.raises(RuntimeError):
        async with MemoryUnitOfWork(store) as uow:
            await uow.accounts.add(account)
            raise RuntimeError("boom")
    assert await _get(store, account.id) is None


async def test_rollback_discards_and_the_unit_of_work_goes_on() -> None:
    store = MemoryStore()
    first, second = _account("a@example.com"), _account("b@example.com")
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(first)
        await uow.rollback()
        assert await uow.accounts.get(TENANT, first.id) is None
        await uow.accounts.add(second)
        await uow.commit()
        # after a commit, a new transaction: uncommitted changes are dropped again
        second.full_name = "changed"
        await uow.accounts.update(second)
    assert await _get(store, first.id) is None
    stored = await _get(store, second.id)
    assert stored is not None
    assert stored.full_name is None


async def test_entities_are_copied_in_and_out() -> None:
    store = MemoryStore()
    account = _account()
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(account)
        account.full_name = "mutated after add"
        loaded = await uow.accounts.get(TENANT, account.id)
        assert loaded is not None
        loaded.full_name = "mutated after get"
        await uow.commit()
    stored = await _get(store, account.id)
    assert stored is not None
    assert stored.full_name is None


async def test_repositories_refuse_use_outside_async_with() -> None:
    store = MemoryStore()
    uow = MemoryUnitOfWork(store)
    async with uow:
        pass
    with pytest.raises(RuntimeError):
        await uow.accounts.get(TENANT, uuid.uuid4())


async def test_an_unavailable_store_refuses_new_units_of_work() -> None:
    store = MemoryStore()
    store.available = False
    with pytest.raises(StorageUnavailableError):
        async with memory_uow_factory(store)():
            pass


async def test_email_is_unique_per_tenant_case_insensitively() -> None:
    store = MemoryStore()
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(_account("Ada@example.com"))
        await uow.accounts.add(_account("ada@example.com", tenant_id=uuid.uuid4()))
        with pytest.raises(EmailAlreadyRegisteredError):
            await uow.accounts.add(_account("ADA@example.com"))
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        found = await uow.accounts.get_by_email(TENANT, "ada@example.com")
    assert found is not None
    assert found.email.value == "Ada@example.com"


async def test_a_racing_insert_waits_then_fails_or_succeeds_with_the_other() -> None:
    store = MemoryStore()
    for winner_commits in (True, False):
        email = f"race-{str(winner_commits).lower()}@example.com"
        first = MemoryUnitOfWork(store)
        await first.__aenter__()
        await first.accounts.add(_account(email))

        async def second_insert(email: str = email) -> None:
            async with MemoryUnitOfWork(store) as uow:
                await uow.accounts.add(_account(email))
                await uow.commit()

        racer = asyncio.create_task(second_insert())
        for _ in range(5):
            await asyncio.sleep(0)  # yield to the racer (no time passes) until it blocks
        assert not racer.done()  # waiting for the first transaction
        if winner_commits:
            await first.commit()
            with pytest.raises(EmailAlreadyRegisteredError):
                await racer
        else:
            await first.rollback()
            await racer
        await first.__aexit__(None, None, None)
        async with MemoryUnitOfWork(store) as uow:
            assert await uow.accounts.get_by_email(TENANT, email) is not None


async def test_one_task_waiting_on_its_own_lock_raises_instead_of_hanging() -> None:
    store = MemoryStore()
    account = _account()
    async with MemoryUnitOfWork(store) as uow:
        await uow.accounts.add(account)
        await uow.commit()
    async with MemoryUnitOfWork(store) as first, MemoryUnitOfWork(store) as second:
        await first.accounts.update(account)
        with pytest.raises(MemoryDeadlockError):
            await second.accounts.update(account)


async def test_tenant_slug_is_unique() -> None:
    store = MemoryStore()

    def tenant() -> Tenant:
        return Tenant(id=uuid.uuid4(), slug="acme", name="Acme", created_at=T0)

    async with MemoryUnitOfWork(store) as uow:
        await uow.tenants.add(tenant())
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        with pytest.raises(TenantAlreadyExistsError):
            await uow.tenants.add(tenant())
        assert [t.slug for t in await uow.tenants.list()] == ["acme"]


async def test_rotate_is_conditional_and_only_one_concurrent_caller_wins() -> None:
    store = MemoryStore()
    session = _session(uuid.uuid4())
    async with MemoryUnitOfWork(store) as uow:
        await _add_session(uow, session)
        await uow.commit()
    barrier = asyncio.Barrier(5)

    async def rotate(n: int) -> bool:
        async with MemoryUnitOfWork(store) as uow:
            loaded = await uow.sessions.get(TENANT, session.id)
            assert loaded is not None
            await barrier.wait()
            loaded.rotate(f"jti-new-{n}", T0, timedelta(days=1))
            won = await uow.sessions.rotate(loaded, "jti-1")
            await uow.commit()
            return won

    results = await asyncio.gather(*(rotate(n) for n in range(5)))
    assert results.count(True) == 1
    async with MemoryUnitOfWork(store) as uow:
        stored = await uow.sessions.get(TENANT, session.id)
    assert stored is not None
    assert stored.refresh_jti == f"jti-new-{results.index(True)}"
    assert stored.previous_refresh_jti == "jti-1"


async def test_rotate_does_not_undo_a_revoke() -> None:
    store = MemoryStore()
    session = _session(uuid.uuid4())
    async with MemoryUnitOfWork(store) as uow:
        await _add_session(uow, session)
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        assert await uow.sessions.revoke(TENANT, session.id, T0, "logout")
        assert not await uow.sessions.revoke(TENANT, session.id, T0, "again")
        session.rotate("jti-2", T0, timedelta(days=1))
        assert not await uow.sessions.rotate(session, "jti-1")
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        stored = await uow.sessions.get(TENANT, session.id)
        assert await uow.sessions.get(uuid.uuid4(), session.id) is None
    assert stored is not None
    assert (stored.refresh_jti, stored.revoked_reason) == ("jti-1", "logout")


async def test_revoke_all_keeps_one_and_skips_ended_sessions() -> None:
    store = MemoryStore()
    user = uuid.uuid4()
    keep, other, expired = _session(user), _session(user), _session(user, ttl=timedelta(0))
    stranger = _session(uuid.uuid4())
    async with MemoryUnitOfWork(store) as uow:
        for session in (keep, other, expired, stranger):
            await _add_session(uow, session)
        assert await uow.sessions.revoke_all_for_account(TENANT, user, T0, "x", keep=keep.id) == [
            other.id
        ]
        active = await uow.sessions.list_active_for_account(TENANT, user, T0)
        assert [s.id for s in active] == [keep.id]
        await uow.commit()


async def test_record_check_is_conditional() -> None:
    store = MemoryStore()
    challenge = OtpChallenge(
        id=uuid.uuid4(),
        tenant_id=TENANT,
        email_key="ada@example.com",
        purpose=OtpPurpose.LOGIN,
        code_digest="d",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=10),
        max_attempts=5,
    )
    async with MemoryUnitOfWork(store) as uow:
        await uow.challenges.replace(challenge)
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        challenge.consumed_at = T0
        assert await uow.challenges.record_check(challenge, 0)
        assert not await uow.challenges.record_check(challenge, 0)  # spent already
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        stored = await uow.challenges.get(TENANT, "ada@example.com", OtpPurpose.LOGIN)
        assert stored is not None
        assert stored.consumed_at == T0
        assert await uow.challenges.get(TENANT, "ada@example.com", OtpPurpose.VERIFICATION) is None
        assert await uow.challenges.delete_expired(T0) == 1
        await uow.commit()


async def test_invalidated_tokens_are_per_tenant_and_idempotent() -> None:
    store = MemoryStore()
    async with MemoryUnitOfWork(store) as uow:
        await uow.invalidated_tokens.add(TENANT, "jti", T0 + timedelta(days=1), T0)
        await uow.invalidated_tokens.add(TENANT, "jti", T0 + timedelta(days=1), T0)
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        assert await uow.invalidated_tokens.contains(TENANT, "jti")
        assert not await uow.invalidated_tokens.contains(uuid.uuid4(), "jti")
        assert await uow.invalidated_tokens.delete_expired(T0 + timedelta(days=2)) == 1


async def test_outbox_claim_lease_and_marks() -> None:
    store = MemoryStore()
    lease = timedelta(minutes=1)
    async with MemoryUnitOfWork(store) as uow:
        await uow.outbox.add(TENANT, _message("a@example.com"), T0)
        await uow.outbox.add(TENANT, _message("b@example.com"), T0 + timedelta(seconds=1))
        await uow.commit()
    assert [m.to for m in store.messages()] == ["a@example.com", "b@example.com"]

    async with MemoryUnitOfWork(store) as uow:
        claimed = await uow.outbox.claim_due(T0 + timedelta(seconds=1), 1, lease)
        await uow.commit()
    assert [(i.message.to, i.attempts) for i in claimed] == [("a@example.com", 1)]

    async with MemoryUnitOfWork(store) as uow:
        # a is leased; b is due
        again = await uow.outbox.claim_due(T0 + timedelta(seconds=2), 10, lease)
        assert [i.message.to for i in again] == ["b@example.com"]
        await uow.outbox.mark_sent(again[0].id, T0)
        await uow.outbox.mark_failed(claimed[0].id, "x" * 900, T0 + timedelta(minutes=5))
        await uow.commit()
        assert await uow.outbox.pending_count() == 1

    async with MemoryUnitOfWork(store) as uow:
        assert await uow.outbox.claim_due(T0 + timedelta(minutes=4), 10, lease) == []
        retried = await uow.outbox.claim_due(T0 + timedelta(minutes=5), 10, lease)
        assert [(i.message.to, i.attempts) for i in retried] == [("a@example.com", 2)]
        await uow.outbox.mark_failed(retried[0].id, "gave up", None)
        await uow.commit()
        assert await uow.outbox.pending_count() == 0
    assert store.messages() == []  # sent and dead messages are dropped


async def test_concurrent_claimers_take_different_messages() -> None:
    store = MemoryStore()
    async with MemoryUnitOfWork(store) as uow:
        for n in range(6):
            await uow.outbox.add(TENANT, _message(f"{n}@example.com"), T0)
        await uow.commit()
    barrier = asyncio.Barrier(3)

    async def claim() -> list[str]:
        async with MemoryUnitOfWork(store) as uow:
            await barrier.wait()
            items = await uow.outbox.claim_due(T0, 2, timedelta(minutes=1))
            await uow.commit()
            return [item.message.to for item in items]

    batches = await asyncio.gather(*(claim() for _ in range(3)))
    taken = [to for batch in batches for to in batch]
    assert sorted(taken) == sorted(f"{n}@example.com" for n in range(6))


async def test_a_pending_sign_in_is_taken_once() -> None:
    store = MemoryStore()
    pending = PendingSignIn(
        key="k",
        tenant_id=TENANT,
        provider="google",
        state_digest="s",
        nonce="n",
        code_verifier="v",
        redirect_to=None,
        created_at=T0,
        expires_at=T0 + timedelta(minutes=10),
    )
    async with MemoryUnitOfWork(store) as uow:
        await uow.oauth_states.add(pending)
        await uow.commit()

    async def take() -> PendingSignIn | None:
        async with MemoryUnitOfWork(store) as uow:
            taken = await uow.oauth_states.take("k")
            await uow.commit()
            return taken

    results = await asyncio.gather(*(take() for _ in range(4)))
    assert results.count(pending) == 1
    assert results.count(None) == 3


async def test_an_external_identity_links_once() -> None:
    store = MemoryStore()

    def link() -> LinkedIdentity:
        return LinkedIdentity(
            id=uuid.uuid4(),
            tenant_id=TENANT,
            user_id=uuid.uuid4(),
            provider="google",
            subject="123",
            email_at_link=None,
            created_at=T0,
        )

    first = link()
    async with MemoryUnitOfWork(store) as uow:
        await uow.external_identities.add(first)
        await uow.commit()
    async with MemoryUnitOfWork(store) as uow:
        with pytest.raises(IdentityAlreadyLinkedError):
            await uow.external_identities.add(link())
        assert await uow.external_identities.get(TENANT, "google", "123") == first
        assert await uow.external_identities.get(uuid.uuid4(), "google", "123") is None


async def test_try_lock_is_held_until_the_transaction_ends() -> None:
    store = MemoryStore()
    async with MemoryUnitOfWork(store) as first, MemoryUnitOfWork(store) as second:
        assert await first.try_lock("cleanup")
        assert await first.try_lock("cleanup")  # re-entrant for its holder
        assert not await second.try_lock("cleanup")
        assert await second.try_lock("other job")
        await first.commit()
        assert await second.try_lock("cleanup")
        assert not await first.try_lock("cleanup")
    async with MemoryUnitOfWork(store) as third:
        assert await third.try_lock("cleanup")  # released on leaving the block
