"""Repositories over SQLAlchemy Core with explicit row-to-entity mapping.

They share the unit of work's connection and never commit.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    Table,
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.native import ManyRowsRead
from identity.adapters.sqlalchemy.types import UtcDateTime
from identity.application.policy import is_secret_setting
from identity.application.ports import (
    AccountRepository,
    CodeRequestQueue,
    ExternalIdentityRepository,
    InvalidatedTokenRepository,
    OAuthStateRepository,
    OtpChallengeRepository,
    OutboxItem,
    OutboxRepository,
    Position,
    SessionRepository,
    TenantRepository,
)
from identity.domain.accounts import Account
from identity.domain.code_requests import CodeRequest, Registration
from identity.domain.emails import Email
from identity.domain.errors import (
    EmailAlreadyRegisteredError,
    IdentityInUseError,
    InvalidEmailError,
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


def _constraint_name(error: IntegrityError) -> str:
    """The violated constraint's name (asyncpg exposes it; SQLite only in the text)."""
    original: Any = getattr(error.orig, "__cause__", None) or error.orig
    name = getattr(original, "constraint_name", None)
    return str(name) if name else str(error.orig)


log = logging.getLogger("identity.storage")

# A sealed setting value: the prefix tells it from a value stored in clear by an
# earlier version (read as it is, sealed at the tenant's next write).
SEALED_SETTING_PREFIX = "sealed:v1:"


class SqlTenantRepository(TenantRepository):
    """Tenants; provider client secrets among the settings are stored sealed."""

    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    def _to_entity(self, row: Any) -> Tenant:
        return Tenant(
            id=row.id,
            slug=row.slug,
            name=row.name,
            created_at=row.created_at,
            disabled=row.disabled,
            settings=self._unsealed(row.slug, dict(row.settings or {})),
        )

    def _unsealed(self, slug: str, settings: dict[str, Any]) -> dict[str, Any]:
        for key, value in list(settings.items()):
            if not (isinstance(value, str) and value.startswith(SEALED_SETTING_PREFIX)):
                continue
            try:
                sealed = value.removeprefix(SEALED_SETTING_PREFIX).encode()
                settings[key] = self._sealer.unseal(sealed).decode()
            except UnsealError:
                # Another secret key: the provider reads as not configured for this
                # tenant (its sign-in answers so) rather than failing every request.
                log.warning("tenant setting cannot be unsealed", extra={"tenant": slug, "key": key})
                del settings[key]
        return settings

    def _sealed(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (
                SEALED_SETTING_PREFIX + self._sealer.seal(value.encode()).decode()
                if is_secret_setting(key) and isinstance(value, str)
                else value
            )
            for key, value in settings.items()
        }

    async def get_by_slug(self, slug: str) -> Tenant | None:
        row = (await self._c.execute(select(t.tenants).where(t.tenants.c.slug == slug))).first()
        return self._to_entity(row) if row else None

    async def get(self, tenant_id: UUID) -> Tenant | None:
        row = (await self._c.execute(select(t.tenants).where(t.tenants.c.id == tenant_id))).first()
        return self._to_entity(row) if row else None

    async def list(self) -> list[Tenant]:
        rows = await self._c.execute(select(t.tenants).order_by(t.tenants.c.slug))
        return [self._to_entity(row) for row in rows]

    async def add(self, tenant: Tenant) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(insert(t.tenants).values(**self._values(tenant)))
        except IntegrityError as error:
            if "slug" in _constraint_name(error):  # uq_tenants_slug; SQLite names the column
                raise TenantAlreadyExistsError(tenant.slug) from None
            raise

    async def update(self, tenant: Tenant) -> None:
        await self._c.execute(
            update(t.tenants).where(t.tenants.c.id == tenant.id).values(**self._values(tenant))
        )

    def _values(self, tenant: Tenant) -> dict[str, Any]:
        return {
            "id": tenant.id,
            "slug": tenant.slug,
            "name": tenant.name,
            "created_at": tenant.created_at,
            "disabled": tenant.disabled,
            "settings": json.loads(json.dumps(self._sealed(tenant.settings))),
        }


# ``Account.identities`` is read from ``users.identities``, which linking and
# unlinking recompute from ``external_identities`` in their own transaction.
def _recomputed_identities(account_id: Any) -> Any:
    return (
        select(
            func.aggregate_strings(t.external_identities.c.provider, literal_column("','"))  # type: ignore[arg-type]
        )
        .where(t.external_identities.c.user_id == account_id)
        .scalar_subquery()
    )


def identity_names(value: str | None) -> tuple[str, ...]:
    """The aggregated provider names as the sorted tuple ``Account.identities`` holds."""
    return tuple(sorted(value.split(","))) if value else ()


# The statements of the hot paths are built once: SQLAlchemy memoises a
# statement object's cache key, so each execution skips construction and hashing.
_ACCOUNT_BY_ID = select(t.users).where(
    t.users.c.tenant_id == bindparam("tenant_id"), t.users.c.id == bindparam("account_id")
)
_ACCOUNT_BY_EMAIL = select(t.users).where(
    t.users.c.tenant_id == bindparam("tenant_id"),
    t.users.c.normalized_email == bindparam("email_key"),
)
_ACCOUNTS_FIRST = (
    select(t.users)
    .where(t.users.c.tenant_id == bindparam("tenant_id"))
    .order_by(t.users.c.created_at, t.users.c.id)
    .limit(bindparam("limit"))
)
# A row comparison the (tenant_id, created_at, id) index answers directly.
_ACCOUNTS_AFTER = _ACCOUNTS_FIRST.where(
    tuple_(t.users.c.created_at, t.users.c.id)
    > tuple_(
        bindparam("after_created_at", type_=UtcDateTime()), bindparam("after_id", type_=Uuid())
    )
)
_USER_DATETIMES = ("verified_at", "created_at", "updated_at", "last_login_at")
_ACCOUNTS_FIRST_READ = ManyRowsRead(_ACCOUNTS_FIRST, datetimes=_USER_DATETIMES)
_ACCOUNTS_AFTER_READ = ManyRowsRead(_ACCOUNTS_AFTER, datetimes=_USER_DATETIMES)
_SESSION_BY_ID = select(t.sessions).where(
    t.sessions.c.tenant_id == bindparam("tenant_id"), t.sessions.c.id == bindparam("session_id")
)
_ROTATE_SESSION = (
    update(t.sessions)
    .where(
        t.sessions.c.id == bindparam("b_id"),
        t.sessions.c.tenant_id == bindparam("b_tenant_id"),
        t.sessions.c.refresh_jti == bindparam("b_presented"),
        t.sessions.c.revoked_at.is_(None),
    )
    .values(
        refresh_jti=bindparam("b_refresh_jti"),
        previous_refresh_jti=bindparam("b_previous"),
        rotated_at=bindparam("b_rotated_at", type_=UtcDateTime()),
        refresh_issued_at=bindparam("b_issued_at", type_=UtcDateTime()),
        last_used_at=bindparam("b_last_used_at", type_=UtcDateTime()),
        expires_at=bindparam("b_expires_at", type_=UtcDateTime()),
    )
)
_DENYLISTED = select(t.invalidated_tokens.c.jti).where(
    t.invalidated_tokens.c.jti == bindparam("jti"),
    t.invalidated_tokens.c.tenant_id == bindparam("tenant_id"),
)


class SqlAccountRepository(AccountRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection
        # Column values as read, per account: ``update`` writes only what changed,
        # so a use case holding an older copy cannot undo a concurrent change to
        # another column (a disable, a new password) by writing its stale copy.
        self._read: dict[UUID, dict[str, Any]] = {}

    def _remember(self, row: Any) -> Account | None:
        if row is None:
            return None
        account = self._to_entity(row)
        self._read[account.id] = self._values(account)
        return account

    @staticmethod
    def _to_entity(row: Any) -> Account:
        return Account(
            id=row.id,
            tenant_id=row.tenant_id,
            email=Email(row.email),
            password_hash=row.password_hash,
            full_name=row.full_name,
            is_verified=row.is_verified,
            is_active=row.is_active,
            verified_at=row.verified_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            identities=identity_names(row.identities),
            mfa_enabled=row.mfa_enabled,
            last_login_at=row.last_login_at,
            locale=row.locale,
        )

    @staticmethod
    def _values(account: Account) -> dict[str, Any]:
        return {
            "id": account.id,
            "tenant_id": account.tenant_id,
            "email": account.email.value,
            "normalized_email": account.email.key,
            "password_hash": account.password_hash,
            "full_name": account.full_name,
            "is_verified": account.is_verified,
            "is_active": account.is_active,
            "verified_at": account.verified_at,
            "created_at": account.created_at,
            "updated_at": account.updated_at,
            "mfa_enabled": account.mfa_enabled,
            "locale": account.locale,
        }

    async def get(self, tenant_id: UUID, account_id: UUID) -> Account | None:
        params = {"tenant_id": tenant_id, "account_id": account_id}
        return self._remember((await self._c.execute(_ACCOUNT_BY_ID, params)).first())

    async def get_by_email(self, tenant_id: UUID, email_key: str) -> Account | None:
        params = {"tenant_id": tenant_id, "email_key": email_key}
        return self._remember((await self._c.execute(_ACCOUNT_BY_EMAIL, params)).first())

    async def add(self, account: Account) -> None:
        try:
            # A savepoint keeps the transaction usable after a lost race.
            async with self._c.begin_nested():
                await self._c.execute(insert(t.users).values(**self._values(account)))
        except IntegrityError as error:
            name = _constraint_name(error)
            if t.UQ_USERS_TENANT_EMAIL in name or "normalized_email" in name:
                raise EmailAlreadyRegisteredError("email already registered") from None
            raise
        self._read[account.id] = self._values(account)

    async def update(self, account: Account) -> None:
        values = self._values(account)
        read = self._read.get(account.id)
        changed = {k: v for k, v in values.items() if read is None or read.get(k) != v}
        if not changed:
            return
        await self._c.execute(
            update(t.users)
            .where(t.users.c.tenant_id == account.tenant_id, t.users.c.id == account.id)
            .values(**changed)
        )
        self._read[account.id] = values

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Account]:
        params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit}
        read = _ACCOUNTS_FIRST_READ
        if after is not None:
            read = _ACCOUNTS_AFTER_READ
            params.update(after_created_at=after.created_at, after_id=after.id)
        # Read-only: a page is not remembered for ``update``.
        return [self._to_entity(row) for row in await read(self._c, params)]

    async def delete(self, tenant_id: UUID, account_id: UUID) -> bool:
        # Sessions, linked identities and factors go with it (ON DELETE CASCADE).
        result = await self._c.execute(
            delete(t.users).where(t.users.c.tenant_id == tenant_id, t.users.c.id == account_id)
        )
        self._read.pop(account_id, None)
        return result.rowcount == 1


class SqlOtpChallengeRepository(OtpChallengeRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def get(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose
    ) -> OtpChallenge | None:
        c = t.otp_challenges.c
        query = select(t.otp_challenges).where(
            c.tenant_id == tenant_id, c.email_key == email_key, c.purpose == purpose.value
        )
        row = (await self._c.execute(query)).first()
        if row is None:
            return None
        return OtpChallenge(
            id=row.id,
            tenant_id=row.tenant_id,
            email_key=row.email_key,
            purpose=OtpPurpose(row.purpose),
            code_digest=row.code_digest,
            created_at=row.created_at,
            expires_at=row.expires_at,
            max_attempts=row.max_attempts,
            attempts=row.attempts,
            consumed_at=row.consumed_at,
        )

    async def replace(self, challenge: OtpChallenge) -> None:
        c = t.otp_challenges.c
        await self._c.execute(
            delete(t.otp_challenges).where(
                c.tenant_id == challenge.tenant_id,
                c.email_key == challenge.email_key,
                c.purpose == challenge.purpose.value,
            )
        )
        await self._c.execute(
            insert(t.otp_challenges).values(
                id=challenge.id,
                tenant_id=challenge.tenant_id,
                email_key=challenge.email_key,
                purpose=challenge.purpose.value,
                code_digest=challenge.code_digest,
                created_at=challenge.created_at,
                expires_at=challenge.expires_at,
                max_attempts=challenge.max_attempts,
                attempts=challenge.attempts,
                consumed_at=challenge.consumed_at,
            )
        )

    async def record_check(self, challenge: OtpChallenge, attempts_before: int) -> bool:
        c = t.otp_challenges.c
        result = await self._c.execute(
            update(t.otp_challenges)
            .where(
                c.id == challenge.id,
                c.tenant_id == challenge.tenant_id,
                c.attempts == attempts_before,
                c.consumed_at.is_(None),
            )
            .values(attempts=challenge.attempts, consumed_at=challenge.consumed_at)
        )
        return result.rowcount == 1

    async def record_failure(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose, now: datetime, ttl: timedelta
    ) -> None:
        c = t.otp_challenges.c
        insert_ = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        placeholder = insert_(t.otp_challenges).values(
            id=uuid4(),
            tenant_id=tenant_id,
            email_key=email_key,
            purpose=purpose.value,
            code_digest="",  # matches no code: digests are 64 hex characters
            created_at=now,
            expires_at=now + ttl,
            attempts=1,
            max_attempts=0,
        )
        # One statement for every case: an existing code counts the try, else the
        # placeholder is stored (the same write, so the same time).
        await self._c.execute(
            placeholder.on_conflict_do_update(
                index_elements=[c.tenant_id, c.email_key, c.purpose],
                set_={"attempts": c.attempts + 1},
            )
        )

    async def delete_expired(self, now: datetime) -> int:
        c = t.otp_challenges.c
        result = await self._c.execute(
            delete(t.otp_challenges).where(or_(c.expires_at < now, c.consumed_at.is_not(None)))
        )
        return result.rowcount

    async def delete_for_email(self, tenant_id: UUID, email_key: str) -> int:
        c = t.otp_challenges.c
        result = await self._c.execute(
            delete(t.otp_challenges).where(c.tenant_id == tenant_id, c.email_key == email_key)
        )
        return result.rowcount


class SqlSessionRepository(SessionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    @staticmethod
    def _to_entity(row: Any) -> Session:
        return Session(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            refresh_jti=row.refresh_jti,
            refresh_issued_at=row.refresh_issued_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip=row.ip,
            previous_refresh_jti=row.previous_refresh_jti,
            rotated_at=row.rotated_at,
            revoked_at=row.revoked_at,
            revoked_reason=row.revoked_reason,
            aal=row.aal,
            amr=tuple(row.amr.split(",")) if row.amr else (),
        )

    async def add(self, session: Session) -> bool:
        values = {name: getattr(session, name) for name in _SESSION_COLUMNS}
        values["amr"] = ",".join(session.amr)
        params = {f"s_{name}": value for name, value in values.items()}
        if self._c.dialect.name == "postgresql":
            # One statement: the UPDATE locks the account row (a concurrent delete
            # or disable waits, or has won and the UPDATE matches nothing), records
            # the login, and the INSERT takes its values only from a matched row.
            result = await self._c.execute(_ADD_SESSION_FOR_ACTIVE_ACCOUNT, params)
            return result.rowcount == 1
        # SQLite has no data-modifying CTEs; its transactions are serialised anyway.
        touched = await self._c.execute(_TOUCH_LOGIN, params)
        if touched.rowcount != 1:
            return False
        await self._c.execute(insert(t.sessions).values(**values))
        return True

    async def get(self, tenant_id: UUID, session_id: UUID) -> Session | None:
        params = {"tenant_id": tenant_id, "session_id": session_id}
        row = (await self._c.execute(_SESSION_BY_ID, params)).first()
        return self._to_entity(row) if row else None

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        result = await self._c.execute(
            _ROTATE_SESSION,
            {
                "b_id": session.id,
                "b_tenant_id": session.tenant_id,
                "b_presented": presented_jti,
                "b_refresh_jti": session.refresh_jti,
                "b_previous": session.previous_refresh_jti,
                "b_rotated_at": session.rotated_at,
                "b_issued_at": session.refresh_issued_at,
                "b_last_used_at": session.last_used_at,
                "b_expires_at": session.expires_at,
            },
        )
        return result.rowcount == 1

    async def revoke(self, tenant_id: UUID, session_id: UUID, now: datetime, reason: str) -> bool:
        c = t.sessions.c
        result = await self._c.execute(
            update(t.sessions)
            .where(c.tenant_id == tenant_id, c.id == session_id, c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount == 1

    async def set_assurance(self, session: Session) -> bool:
        c = t.sessions.c
        result = await self._c.execute(
            update(t.sessions)
            .where(c.tenant_id == session.tenant_id, c.id == session.id, c.revoked_at.is_(None))
            .values(aal=session.aal, amr=",".join(session.amr))
        )
        return result.rowcount == 1

    async def revoke_all_for_account(
        self,
        tenant_id: UUID,
        account_id: UUID,
        now: datetime,
        reason: str,
        *,
        keep: UUID | None = None,
    ) -> int:
        c = t.sessions.c
        conditions = [
            c.tenant_id == tenant_id,
            c.user_id == account_id,
            c.revoked_at.is_(None),
            c.expires_at > now,
        ]
        if keep is not None:
            conditions.append(c.id != keep)
        result = await self._c.execute(
            update(t.sessions)
            .where(and_(*conditions))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount

    async def list_active_for_account(
        self, tenant_id: UUID, account_id: UUID, now: datetime
    ) -> list[Session]:
        c = t.sessions.c
        rows = await self._c.execute(
            select(t.sessions)
            .where(
                c.tenant_id == tenant_id,
                c.user_id == account_id,
                c.revoked_at.is_(None),
                c.expires_at > now,
            )
            .order_by(c.created_at)
        )
        return [self._to_entity(row) for row in rows]

    async def delete_expired(self, now: datetime) -> int:
        c = t.sessions.c
        # Revoked sessions stay a while so a replayed token is still recognised.
        result = await self._c.execute(
            delete(t.sessions).where(
                or_(c.expires_at < now, c.revoked_at < now - timedelta(days=1))
            )
        )
        return result.rowcount


_SESSION_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "created_at",
    "last_used_at",
    "refresh_jti",
    "refresh_issued_at",
    "expires_at",
    "user_agent",
    "ip",
    "previous_refresh_jti",
    "rotated_at",
    "revoked_at",
    "revoked_reason",
    "aal",
    "amr",
)


# Parameters are prefixed: a bindparam named like a column is reserved by SQLAlchemy.
_TOUCH_LOGIN = (
    update(t.users)
    .where(
        t.users.c.tenant_id == bindparam("s_tenant_id"),
        t.users.c.id == bindparam("s_user_id"),
        t.users.c.is_active.is_(True),
    )
    .values(last_login_at=bindparam("s_created_at", type_=UtcDateTime()))
)
_TOUCHED = _TOUCH_LOGIN.returning(t.users.c.id).cte("touched")
_ADD_SESSION_FOR_ACTIVE_ACCOUNT = insert(t.sessions).from_select(
    list(_SESSION_COLUMNS),
    select(
        *(
            _TOUCHED.c.id
            if name == "user_id"
            else bindparam(f"s_{name}", type_=t.sessions.c[name].type).label(name)
            for name in _SESSION_COLUMNS
        )
    ).select_from(_TOUCHED),
)


class SqlInvalidatedTokenRepository(InvalidatedTokenRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, tenant_id: UUID, jti: str, expires_at: datetime, now: datetime) -> None:
        c = t.invalidated_tokens.c
        exists = await self._c.execute(select(c.jti).where(c.jti == jti))
        if exists.first() is not None:
            return
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(t.invalidated_tokens).values(
                        jti=jti, tenant_id=tenant_id, expires_at=expires_at, created_at=now
                    )
                )
        except IntegrityError:
            return  # a concurrent logout recorded it first

    async def contains(self, tenant_id: UUID, jti: str) -> bool:
        params = {"jti": jti, "tenant_id": tenant_id}
        return (await self._c.execute(_DENYLISTED, params)).first() is not None

    async def delete_expired(self, now: datetime) -> int:
        c = t.invalidated_tokens.c
        result = await self._c.execute(delete(t.invalidated_tokens).where(c.expires_at < now))
        return result.rowcount


def address_digest(sealer: Sealer, tenant_id: UUID, email_key: str) -> str:
    """How a sealed queue finds the rows of one address (see migration 0014)."""
    return sealer.lookup_digest(f"{tenant_id}|{email_key}")


async def _delete_for_address(
    connection: AsyncConnection, table: Table, sealer: Sealer, tenant_id: UUID, email_key: str
) -> int:
    """Rows a worker holds at this moment are skipped, not waited for: the worker
    may in turn wait for the account rows the erasing transaction holds."""
    digest = address_digest(sealer, tenant_id, email_key)
    rows = select(table.c.id).where(
        table.c.tenant_id == tenant_id, table.c.address_digest == digest
    )
    if connection.dialect.name == "postgresql":
        rows = rows.with_for_update(skip_locked=True)
    result = await connection.execute(delete(table).where(table.c.id.in_(rows.scalar_subquery())))
    return int(result.rowcount)


class SqlOutboxRepository(OutboxRepository):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, tenant_id: UUID, message: EmailMessage, now: datetime) -> None:
        payload = json.dumps(
            {
                "to": message.to,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "sender": message.sender,
            }
        ).encode()
        await self._c.execute(
            insert(t.outbox).values(
                id=uuid4(),
                tenant_id=tenant_id,
                sealed_message=self._sealer.seal(payload),
                address_digest=address_digest(self._sealer, tenant_id, message.to.casefold()),
                state="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        return await _delete_for_address(self._c, t.outbox, self._sealer, tenant_id, email_key)

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        c = t.outbox.c
        due = (
            select(c.id)
            .where(
                c.state == "pending",
                c.next_attempt_at <= now,
                or_(c.locked_until.is_(None), c.locked_until < now),
            )
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        if self._c.dialect.name == "postgresql":
            # Several server processes poll at once: each takes different rows.
            due = due.with_for_update(skip_locked=True)
        ids = [row.id for row in await self._c.execute(due)]
        if not ids:
            return []
        rows = await self._c.execute(
            update(t.outbox)
            .where(c.id.in_(ids))
            .values(locked_until=now + lease, attempts=c.attempts + 1)
            .returning(c.id, c.tenant_id, c.sealed_message, c.attempts)
        )
        items = []
        unreadable = []
        for row in rows:
            try:
                data = json.loads(self._sealer.unseal(row.sealed_message))
            except (UnsealError, ValueError, TypeError):
                # Sealed under another secret or damaged: give it up, keep the rest moving.
                unreadable.append(row.id)
                continue
            message = EmailMessage(
                to=data["to"],
                subject=data["subject"],
                text=data["text"],
                html=data["html"],
                sender=data["sender"],
            )
            items.append(
                OutboxItem(
                    id=row.id, tenant_id=row.tenant_id, message=message, attempts=row.attempts
                )
            )
        if unreadable:
            await self._c.execute(
                update(t.outbox)
                .where(t.outbox.c.id.in_(unreadable))
                .values(state="dead", sealed_message=None, last_error="unreadable sealed message")
            )
        return items

    async def mark_sent(self, item_id: UUID, now: datetime) -> None:
        await self._c.execute(
            update(t.outbox)
            .where(t.outbox.c.id == item_id)
            .values(state="sent", sent_at=now, sealed_message=None, locked_until=None)
        )

    async def mark_failed(
        self, item_id: UUID, error: str, next_attempt_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {"last_error": error[:500], "locked_until": None}
        if next_attempt_at is None:
            values.update(state="dead", sealed_message=None)
        else:
            values["next_attempt_at"] = next_attempt_at
        await self._c.execute(update(t.outbox).where(t.outbox.c.id == item_id).values(**values))

    async def pending_count(self) -> int:
        query = select(func.count()).select_from(t.outbox).where(t.outbox.c.state == "pending")
        return int((await self._c.execute(query)).scalar_one())


class SqlExternalIdentityRepository(ExternalIdentityRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    @staticmethod
    def _to_entity(row: Any) -> LinkedIdentity:
        return LinkedIdentity(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            provider=row.provider,
            subject=row.subject,
            email_at_link=row.email_at_link,
            created_at=row.created_at,
        )

    async def get(self, tenant_id: UUID, provider: str, subject: str) -> LinkedIdentity | None:
        c = t.external_identities.c
        query = select(t.external_identities).where(
            c.tenant_id == tenant_id, c.provider == provider, c.subject == subject
        )
        row = (await self._c.execute(query)).first()
        return self._to_entity(row) if row is not None else None

    async def list_for_account(self, tenant_id: UUID, account_id: UUID) -> list[LinkedIdentity]:
        c = t.external_identities.c
        query = (
            select(t.external_identities)
            .where(c.tenant_id == tenant_id, c.user_id == account_id)
            .order_by(c.created_at, c.provider)
        )
        return [self._to_entity(row) for row in await self._c.execute(query)]

    async def add(self, link: LinkedIdentity) -> None:
        # The account row first: inserting the link share-locks it (foreign key),
        # so locking it after would deadlock two links made to it at once.
        await self._lock_account(link.tenant_id, link.user_id)
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(t.external_identities).values(
                        id=link.id,
                        tenant_id=link.tenant_id,
                        user_id=link.user_id,
                        provider=link.provider,
                        subject=link.subject,
                        email_at_link=link.email_at_link,
                        created_at=link.created_at,
                    )
                )
        except IntegrityError as error:
            name = _constraint_name(error)
            if t.UQ_EXTERNAL_IDENTITIES_SUBJECT in name or "external_identities.subject" in name:
                raise IdentityAlreadyLinkedError(link.provider) from None
            if t.UQ_EXTERNAL_IDENTITIES_ACCOUNT in name or "external_identities.user_id" in name:
                # Both may be violated and only one is named: the subject's wins, so
                # a racing first sign-in finds the link that was made.
                if await self.get(link.tenant_id, link.provider, link.subject) is not None:
                    raise IdentityAlreadyLinkedError(link.provider) from None
                raise IdentityInUseError(link.provider) from None
            raise
        await self._refresh_names(link.tenant_id, link.user_id)

    async def delete(self, tenant_id: UUID, link_id: UUID) -> bool:
        c = t.external_identities.c
        result = await self._c.execute(
            delete(t.external_identities)
            .where(c.tenant_id == tenant_id, c.id == link_id)
            .returning(c.user_id)
        )
        user_id = result.scalar_one_or_none()
        if user_id is None:
            return False
        await self._refresh_names(tenant_id, user_id)
        return True

    async def _lock_account(self, tenant_id: UUID, user_id: UUID) -> None:
        u = t.users.c
        # FOR NO KEY UPDATE: it does not block the share lock of a foreign key check.
        owner = select(u.id).where(u.tenant_id == tenant_id, u.id == user_id)
        await self._c.execute(owner.with_for_update(key_share=True))

    async def _refresh_names(self, tenant_id: UUID, user_id: UUID) -> None:
        """Recompute ``users.identities`` after a link or an unlink.

        Under the account's row lock, in a statement of its own: a concurrent
        link or unlink of the same account waits for that lock, and this
        statement (a new snapshot under READ COMMITTED) sees what it committed.
        """
        await self._lock_account(tenant_id, user_id)
        u = t.users.c
        await self._c.execute(
            update(t.users)
            .where(u.tenant_id == tenant_id, u.id == user_id)
            .values(identities=_recomputed_identities(user_id))
        )


class SqlOAuthStateRepository(OAuthStateRepository):
    """Pending sign-ins; the PKCE verifier is stored sealed."""

    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, pending: PendingSignIn) -> None:
        await self._c.execute(
            insert(t.oauth_states).values(
                id=pending.key,
                tenant_id=pending.tenant_id,
                provider=pending.provider,
                link_user_id=pending.link_user_id,
                state_hash=pending.state_digest,
                nonce=pending.nonce,
                code_verifier=self._sealer.seal(pending.code_verifier.encode()),
                redirect_to=pending.redirect_to,
                created_at=pending.created_at,
                expires_at=pending.expires_at,
            )
        )

    async def take(self, key: str) -> PendingSignIn | None:
        # One DELETE ... RETURNING: the row goes to exactly one of several racing callbacks.
        statement = (
            delete(t.oauth_states).where(t.oauth_states.c.id == key).returning(*t.oauth_states.c)
        )
        row = (await self._c.execute(statement)).first()
        if row is None:
            return None
        try:
            code_verifier = self._sealer.unseal(row.code_verifier).decode()
        except UnsealError:
            return None  # sealed under a previous secret key: the flow cannot finish
        return PendingSignIn(
            key=row.id,
            tenant_id=row.tenant_id,
            provider=row.provider,
            link_user_id=row.link_user_id,
            state_digest=row.state_hash,
            nonce=row.nonce,
            code_verifier=code_verifier,
            redirect_to=row.redirect_to,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def delete_expired(self, now: datetime) -> int:
        result = await self._c.execute(
            delete(t.oauth_states).where(t.oauth_states.c.expires_at <= now)
        )
        return result.rowcount


class SqlCodeRequestQueue(CodeRequestQueue):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, request: CodeRequest) -> None:
        registration = request.registration
        payload = {
            "email": request.email.value,
            "purpose": request.purpose.value,
            "registration": None
            if registration is None
            else {
                "password_hash": registration.password_hash,
                "full_name": registration.full_name,
                "client_ip": registration.client_ip,
                "user_agent": registration.user_agent,
                "locale": registration.locale,
            },
        }
        await self._c.execute(
            insert(t.code_requests).values(
                id=request.id,
                tenant_id=request.tenant_id,
                sealed_request=self._sealer.seal(json.dumps(payload).encode()),
                address_digest=address_digest(self._sealer, request.tenant_id, request.email.key),
                requested_at=request.requested_at,
            )
        )

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        return await _delete_for_address(
            self._c, t.code_requests, self._sealer, tenant_id, email_key
        )

    async def take_next(self) -> CodeRequest | None:
        c = t.code_requests.c
        while True:
            oldest = select(c.id).order_by(c.requested_at).limit(1)
            if self._c.dialect.name == "postgresql":
                # Several server processes take requests at once: each its own.
                oldest = oldest.with_for_update(skip_locked=True)
            row = (
                await self._c.execute(
                    delete(t.code_requests)
                    .where(c.id == oldest.scalar_subquery())
                    .returning(c.id, c.tenant_id, c.sealed_request, c.requested_at)
                )
            ).first()
            if row is None:
                return None
            try:
                data = json.loads(self._sealer.unseal(row.sealed_request))
                registration = data["registration"]
                return CodeRequest(
                    id=row.id,
                    tenant_id=row.tenant_id,
                    email=Email(data["email"]),
                    purpose=OtpPurpose(data["purpose"]),
                    requested_at=row.requested_at,
                    registration=None
                    if registration is None
                    else Registration(
                        registration["password_hash"],
                        registration["full_name"],
                        registration.get("client_ip"),
                        registration.get("user_agent"),
                        registration.get("locale"),
                    ),
                )
            except (UnsealError, InvalidEmailError, ValueError, TypeError, KeyError):
                continue  # sealed under another secret or damaged: dropped, take the next
