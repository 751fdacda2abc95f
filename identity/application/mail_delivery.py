"""Delivering the outbox: mail written in a transaction is sent after it, with retries."""

from __future__ import annotations

import logging
from datetime import timedelta

from identity.application.ports import Clock, MailDeliveryError, Mailer, UnitOfWorkFactory
from identity.domain.deliveries import error_note
from identity.domain.sessions import REVOKED_SESSION_RETENTION

log = logging.getLogger("identity.outbox")


class DeliverPendingMail:
    """Send what is due. Safe to run in several processes at once: each message is
    leased to one worker by ``claim_due`` and sent outside any transaction."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        mailer: Mailer,
        clock: Clock,
        *,
        batch_size: int = 20,
        lease: timedelta = timedelta(seconds=120),
        retry_base: timedelta = timedelta(seconds=5),
        retry_max: timedelta = timedelta(hours=1),
        max_attempts: int = 15,
    ) -> None:
        self._uow = uow
        self._mailer = mailer
        self._clock = clock
        self._batch_size = batch_size
        self._lease = lease
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._max_attempts = max_attempts
        self.last_failed = False

    async def __call__(self) -> int:
        """Deliver one batch; return how many messages were handled."""
        async with self._uow() as uow:
            items = await uow.outbox.claim_due(self._clock.now(), self._batch_size, self._lease)
            await uow.commit()
        for item in items:
            try:
                await self._mailer.send(item.message)
            except MailDeliveryError as error:
                self.last_failed = True
                retry_at = None
                if not error.permanent and item.attempts < self._max_attempts:
                    delay = min(self._retry_base * 2 ** (item.attempts - 1), self._retry_max)
                    retry_at = self._clock.now() + delay
                log.warning(
                    "mail delivery failed",
                    extra={
                        "outbox_id": str(item.id),
                        "attempt": item.attempts,
                        "permanent": retry_at is None,
                        "reason": str(error),
                    },
                )
                async with self._uow() as uow:
                    await uow.outbox.mark_failed(item.id, error_note(str(error)), retry_at)
                    await uow.commit()
                continue
            self.last_failed = False
            async with self._uow() as uow:
                await uow.outbox.mark_sent(item.id, self._clock.now())
                await uow.commit()
        return len(items)


class PurgeExpired:
    """Delete expired codes, denylist rows, sessions, pending external sign-ins,
    pending second steps, passkey ceremonies and invitations, and security events older
    than ``event_retention``.

    Every server process runs it periodically; a lock held for the transaction
    lets one process purge at a time and the others skip their turn.
    """

    LOCK = "purge_expired"

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        event_retention: timedelta = timedelta(days=90),
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._event_retention = event_retention

    async def __call__(self) -> dict[str, int] | None:
        """The rows deleted per kind, or None when another process is purging."""
        async with self._uow() as uow:
            if not await uow.try_lock(self.LOCK):
                log.debug("purge skipped: another process is purging")
                return None
            now = self._clock.now()
            counts = {
                "otp_challenges": await uow.challenges.delete_expired(now),
                "invalidated_tokens": await uow.invalidated_tokens.delete_expired(now),
                "sessions": await uow.sessions.delete_expired(
                    now, revoked_before=now - REVOKED_SESSION_RETENTION
                ),
                "oauth_states": await uow.oauth_states.delete_expired(now),
                "security_events": await uow.events.delete_older_than(now - self._event_retention),
                "mfa_challenges": await uow.mfa_challenges.delete_expired(now),
                "webauthn_flows": await uow.webauthn_flows.delete_expired(now),
                "invitations": await uow.invitations.delete_expired(now),
                "oauth_codes": await uow.authorization_codes.delete_expired(now),
            }
            await uow.commit()
        return counts
