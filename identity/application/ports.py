"""Ports: what the use cases need from the outside world.

Adapters subclass these Protocols explicitly. Each docstring is the contract:
what the method does, what it raises, and whether it may block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

import attrs

from identity.domain.accounts import Account
from identity.domain.api_keys import ApiKey
from identity.domain.browser_sessions import BrowserSession
from identity.domain.code_requests import CodeRequest
from identity.domain.events import EventType, SecurityEvent
from identity.domain.external_sign_in import LinkedIdentity, PendingSignIn
from identity.domain.identities import ExternalIdentity, OAuthClient
from identity.domain.imports import ImportedUser, ImportRun, OnConflict, Refusal
from identity.domain.mail import EmailMessage
from identity.domain.mfa import MfaChallenge, RecoveryCode, TotpFactor
from identity.domain.oauth import (
    AuthorizationCode,
    Client,
    ClientSession,
    Consent,
    EndedClientSession,
)
from identity.domain.organizations import Invitation, Membership, Organization, OrgClaims, Role
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.passkeys import Passkey, RelyingParty, WebAuthnFlow
from identity.domain.ratelimits import RateLimit, RateLimitDecision
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.domain.tokens import AccessClaims, RefreshClaims
from identity.domain.webhooks import Webhook, WebhookDelivery


@attrs.frozen
class Position:
    """Where a keyset page starts: just past the row with this (created_at, id),
    in the list's order (strictly after it oldest first, strictly before it
    newest first). Every list's cursor (``application.pagination``).

    Lists are ordered by a (time, id) key, unique and immutable, so a walk sees
    every row that existed when it began exactly once, whatever is inserted
    meanwhile. ``created_at`` is the row's time in that key (an event's
    ``occurred_at``).
    """

    created_at: datetime
    id: UUID


@attrs.frozen
class OutboxItem:
    id: UUID
    tenant_id: UUID
    message: EmailMessage
    attempts: int


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class PasswordHasher(Protocol):
    """Slow password hashing. Implementations run the work off the event loop."""

    async def hash(self, password: str) -> str:
        """Return a self-describing hash of ``password`` (never the password)."""
        ...

    async def verify(self, password: str, hashed: str) -> bool:
        """True when ``password`` matches ``hashed``; False for any mismatch or bad hash."""
        ...

    async def dummy_verify(self, password: str) -> None:
        """Spend the same time as ``verify`` on a real hash, for unknown accounts."""
        ...

    def needs_rehash(self, hashed: str) -> bool:
        """True when ``hashed`` was made with other parameters than the current ones,
        or by another system (an imported hash): the next sign-in replaces it."""
        ...

    def refusal(self, hashed: str) -> str | None:
        """None when ``verify`` can check ``hashed`` (this service's own or an imported
        format); otherwise a short reason. Cheap (no hashing); never raises."""
        ...

    async def warm_up(self) -> None:
        """Prepare, once at start, what the first call needs (bcrypt makes the dummy
        hash ``dummy_verify`` checks against); nothing by default."""
        return None


class CommonPasswords(Protocol):
    def is_common(self, password: str) -> bool:
        """True when ``password`` is on a list of the most used passwords."""
        ...


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver one message now.

        Raises ``MailDeliveryError`` when it could not be delivered; the outbox
        worker then retries later. Must not log the message body.
        """
        ...


class MailDeliveryError(Exception):
    """Delivery failed; ``permanent`` says whether a retry can help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class TokenCodec(Protocol):
    """Signs and verifies tokens. Pure CPU work, does not block on I/O."""

    def encode_access(self, claims: AccessClaims) -> str: ...

    def encode_refresh(self, claims: RefreshClaims) -> str: ...

    def decode_access(self, token: str) -> AccessClaims:
        """Verify signature, algorithm, iss, aud, exp, typ; raise ``InvalidTokenError``."""
        ...

    def decode_refresh(self, token: str) -> RefreshClaims:
        """As ``decode_access`` for refresh tokens; raise ``InvalidTokenError``."""
        ...


RateLimiterStatus = Literal["ok", "degraded"]


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        """Count one hit on ``key`` against ``limit`` and say whether it is allowed.

        A refused hit is not counted. Atomic across concurrent callers: with N
        allowed, no interleaving lets more than N through in one window.
        """
        ...

    @property
    def status(self) -> RateLimiterStatus:
        """What ``/health`` reports: ``"degraded"`` while a fallback answers for an
        unreachable store; ``"ok"`` by default."""
        return "ok"


class IdentityProvider(Protocol):
    """An external identity provider (OpenID Connect, or OAuth 2 such as GitHub).

    Calls the provider over the network, each call bounded by a timeout. Two
    errors only: ``OAuthFailedError`` (safe message) when the provider refuses
    or answers something that does not prove who the person is, and
    ``ProviderUnavailableError`` when it cannot be reached, times out or fails
    on its side (5xx).
    """

    name: str

    async def authorization_url(
        self,
        client: OAuthClient,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """The provider URL to send the browser to (code flow, PKCE S256; OIDC adds the nonce)."""
        ...

    async def exchange(
        self,
        client: OAuthClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        nonce: str,
    ) -> ExternalIdentity:
        """Redeem ``code`` with the PKCE verifier and establish who signed in.

        OIDC validates the ID token fully (signature, ``iss``, ``aud``, ``azp``,
        ``exp``, ``nonce``); OAuth 2 providers read the person from their API.
        ``email_verified`` is True only when the provider vouches for the address.
        """
        ...


class TotpEngine(Protocol):
    """RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps). Pure CPU work, does not block."""

    def new_secret(self) -> str:
        """A fresh random base32 secret (160 bits) for an authenticator app."""
        ...

    def provisioning_uri(self, secret: str, *, account_name: str, issuer: str) -> str:
        """The ``otpauth://totp/...`` URI an authenticator app scans."""
        ...

    def matching_step(self, secret: str, code: str, now: datetime) -> int | None:
        """The time step whose code ``code`` is, allowing one step of drift each way.

        None when it matches none of them (or is not six digits). The caller
        refuses a step it accepted before (replay).
        """
        ...


# --- storage -----------------------------------------------------------------
# Every repository method that reaches tenant data takes the tenant id: there
# is no way to read one tenant's rows without naming it. Repositories never
# commit; the unit of work does.


class TenantRepository(Protocol):
    async def get_by_slug(self, slug: str) -> Tenant | None: ...

    async def get(self, tenant_id: UUID) -> Tenant | None: ...

    async def list(self) -> list[Tenant]: ...

    async def add(self, tenant: Tenant) -> None:
        """Raise ``TenantAlreadyExistsError`` when the slug is taken."""
        ...

    async def update(self, tenant: Tenant) -> None: ...


class AccountRepository(Protocol):
    async def get(self, tenant_id: UUID, account_id: UUID) -> Account | None: ...

    async def get_by_email(self, tenant_id: UUID, email_key: str) -> Account | None: ...

    async def add(self, account: Account) -> None:
        """Raise ``EmailAlreadyRegisteredError`` when (tenant, email) exists (even racing)."""
        ...

    async def update(self, account: Account) -> None: ...

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Account]:
        """Up to ``limit`` accounts of the tenant ordered by (created_at, id), after ``after``."""
        ...

    async def delete(self, tenant_id: UUID, account_id: UUID) -> bool:
        """Erase the account and every row tied to it (sessions, linked identities,
        factors); False when there was none. Codes are keyed by email: see
        ``OtpChallengeRepository.delete_for_email``."""
        ...


class OtpChallengeRepository(Protocol):
    async def get(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose
    ) -> OtpChallenge | None: ...

    async def replace(self, challenge: OtpChallenge) -> None:
        """Store ``challenge`` as the one code for its (tenant, email, purpose)."""
        ...

    async def record_check(self, challenge: OtpChallenge, attempts_before: int) -> bool:
        """Persist the outcome of ``challenge.check`` only if nobody else checked meanwhile.

        False when a concurrent check won (the caller treats that as invalid).
        """
        ...

    async def record_failure(self, placeholder: OtpChallenge) -> None:
        """Count one failed check against the code of the placeholder's (tenant, email, purpose).

        The same write whether or not a code exists: without one, ``placeholder``
        (``OtpChallenge.placeholder``: it matches no code) is stored with that one
        failed try, so a failed check costs the same for every email.
        """
        ...

    async def delete_expired(self, now: datetime) -> int: ...

    async def delete_for_email(self, tenant_id: UUID, email_key: str) -> int:
        """Every code of the address, whatever its purpose (an erased account's)."""
        ...


class SessionRepository(Protocol):
    async def add(self, session: Session) -> bool:
        """Open ``session`` for a sign-in and record it as the account's last login.

        Only while the account exists and is active, checked atomically with the
        insert (a concurrent delete or disable either waits for this transaction,
        and then ends the session, or wins, and nothing is stored): False then.
        """
        ...

    async def get(self, tenant_id: UUID, session_id: UUID) -> Session | None: ...

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        """Write the rotated ``session`` only if its live token is still ``presented_jti``.

        One conditional update: of many concurrent callers, exactly one gets True.
        """
        ...

    async def revoke(self, tenant_id: UUID, session_id: UUID, now: datetime, reason: str) -> bool:
        """End one session; False when it was not active."""
        ...

    async def set_assurance(self, session: Session) -> bool:
        """Write ``session.aal`` and ``session.amr`` only; False when it is no longer active."""
        ...

    async def revoke_all_for_account(
        self,
        tenant_id: UUID,
        account_id: UUID,
        now: datetime,
        reason: str,
        *,
        keep: UUID | None = None,
    ) -> list[UUID]:
        """End every active session of the account but ``keep``; the ids of those ended."""
        ...

    async def list_active_for_account(
        self, tenant_id: UUID, account_id: UUID, now: datetime
    ) -> list[Session]: ...

    async def delete_expired(self, now: datetime, *, revoked_before: datetime) -> int:
        """Sessions expired at ``now``, and ended ones revoked before ``revoked_before``."""
        ...


class InvalidatedTokenRepository(Protocol):
    async def add(self, tenant_id: UUID, jti: str, expires_at: datetime, now: datetime) -> None:
        """Idempotent."""
        ...

    async def contains(self, tenant_id: UUID, jti: str) -> bool: ...

    async def delete_expired(self, now: datetime) -> int: ...


class OutboxRepository(Protocol):
    async def add(self, tenant_id: UUID, message: EmailMessage, now: datetime) -> None:
        """Queue ``message``; it is stored sealed, never in clear."""
        ...

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        """Drop every message to the address (an erased account's); a message being
        sent at that moment still goes."""
        ...

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        """Lease up to ``limit`` due messages; no two workers get the same one."""
        ...

    async def mark_sent(self, item_id: UUID, now: datetime) -> None: ...

    async def mark_failed(
        self, item_id: UUID, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Schedule a retry at ``next_attempt_at``, or give up when it is None.

        ``error`` is stored as given: the caller cuts it (``domain.deliveries``).
        """
        ...

    async def pending_count(self) -> int: ...


class ExternalIdentityRepository(Protocol):
    """Links between accounts and provider identities: at most one per (tenant, provider,
    subject), and at most one per (account, provider)."""

    async def get(self, tenant_id: UUID, provider: str, subject: str) -> LinkedIdentity | None: ...

    async def list_for_account(self, tenant_id: UUID, account_id: UUID) -> list[LinkedIdentity]:
        """The account's links, oldest first."""
        ...

    async def add(self, link: LinkedIdentity) -> None:
        """Raise ``IdentityAlreadyLinkedError`` when (tenant, provider, subject) exists, and
        ``IdentityInUseError`` when the account has a link at that provider (even racing)."""
        ...

    async def delete(self, tenant_id: UUID, link_id: UUID) -> bool:
        """Remove one link; False when it was gone already."""
        ...


class OAuthStateRepository(Protocol):
    async def add(self, pending: PendingSignIn) -> None: ...

    async def take(self, key: str) -> PendingSignIn | None:
        """Delete the pending sign-in stored under ``key`` and return it, expired or not.

        Atomic: of many concurrent callers with one key, at most one gets it.
        """
        ...

    async def delete_expired(self, now: datetime) -> int: ...


class CodeRequestQueue(Protocol):
    """Pending code requests (``register``, ``request-otp``), durable until carried out.

    ``take_next`` removes the oldest request and returns it, within the caller's
    transaction: a rollback puts it back. Safe with several processes: each
    request goes to one of them (row locks skipped, not waited for).
    """

    async def add(self, request: CodeRequest) -> None: ...

    async def take_next(self) -> CodeRequest | None: ...

    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        """Drop the pending requests for the address (an erased account's)."""
        ...


class WorkSignal(Protocol):
    """Tells a background worker that work is waiting. Never blocks, never fails."""

    def notify(self) -> None: ...


class TotpFactorRepository(Protocol):
    """At most one TOTP factor per account, pending or confirmed; the secret is sealed."""

    async def get(self, tenant_id: UUID, user_id: UUID) -> TotpFactor | None: ...

    async def replace_pending(self, factor: TotpFactor) -> None:
        """Store ``factor`` (unconfirmed) instead of any pending one of its account.

        Raises ``MfaAlreadyEnabledError`` when a confirmed factor exists, even
        when a concurrent confirmation committed it meanwhile.
        """
        ...

    async def record_use(self, factor: TotpFactor, previous_step: int | None) -> bool:
        """Write ``last_used_step`` (and ``confirmed_at``) only if the stored step is still
        ``previous_step``: of concurrent submissions of one code, exactly one gets True."""
        ...

    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int: ...


class RecoveryCodeRepository(Protocol):
    """Single-use recovery codes, stored as keyed digests; used ones are kept as a record."""

    async def replace_all(self, tenant_id: UUID, user_id: UUID, codes: list[RecoveryCode]) -> None:
        """The account's set becomes ``codes``; every older code is gone."""
        ...

    async def use(self, tenant_id: UUID, user_id: UUID, code_digest: str, now: datetime) -> bool:
        """Mark the unused code with this digest used; False when there is none.

        Atomic: of concurrent uses of one code, exactly one gets True.
        """
        ...

    async def count_unused(self, tenant_id: UUID, user_id: UUID) -> int: ...

    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int: ...


class MfaChallengeRepository(Protocol):
    """Pending second steps of sign-ins (``mfa_token``), keyed by the token's digest."""

    async def add(self, challenge: MfaChallenge) -> None: ...

    async def get(self, tenant_id: UUID, key: str) -> MfaChallenge | None: ...

    async def record_check(self, challenge: MfaChallenge, attempts_before: int) -> bool:
        """Persist ``attempts`` and ``consumed_at`` only if nobody checked meanwhile.

        False when a concurrent check won (the caller treats the token as spent).
        """
        ...

    async def delete_expired(self, now: datetime) -> int: ...


class ApiKeyRepository(Protocol):
    async def get(self, key_id: UUID) -> ApiKey | None:
        """The key with this id, of any tenant (the key names its tenant): one indexed read."""
        ...

    async def list_for_tenant(self, tenant_id: UUID) -> list[ApiKey]:
        """Every key of the tenant, revoked ones included, oldest first."""
        ...

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[ApiKey]:
        """As ``list_for_tenant``, one keyset page: up to ``limit`` keys after ``after``."""
        ...

    async def add(self, key: ApiKey) -> None: ...

    async def update(self, key: ApiKey) -> None: ...


class EventRepository(Protocol):
    async def add(self, event: SecurityEvent) -> None:
        """Store ``event`` and queue one webhook delivery for every webhook of its
        tenant subscribed to its type, in the caller's transaction (both stay only
        if it commits). Adds at most one round trip to the transaction."""
        ...

    async def list(
        self,
        tenant_id: UUID,
        *,
        limit: int,
        user_id: UUID | None = None,
        type: EventType | None = None,
        before: Position | None = None,
    ) -> list[SecurityEvent]:
        """Up to ``limit`` events of the tenant, newest first (ties by id, descending),
        strictly older than ``before`` when given."""
        ...

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Purge events that occurred before ``cutoff`` (their deliveries go with them)."""
        ...


@attrs.frozen
class DueDelivery:
    """A leased delivery attempt with what it needs to be sent."""

    delivery: WebhookDelivery
    webhook: Webhook
    event: SecurityEvent
    tenant_slug: str


@attrs.frozen
class DeliveryOutcome:
    """How one attempt went: ``error`` None means delivered; else retry at ``retry_at``
    (None: give up, ``failed``)."""

    delivery_id: UUID
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    retry_at: datetime | None = None


class WebhookDeliveryError(Exception):
    """An attempt got no HTTP answer (refused target, connection, timeout); the message
    says which, safely."""


class WebhookTargetGuard(Protocol):
    async def check(self, url: str) -> None:
        """Raise ``WebhookUrlRefusedError`` unless ``url`` is http(s) to a host whose
        every address (after DNS resolution) is public: not loopback, private,
        link-local, multicast or unspecified, unless private targets are allowed.
        Resolves names without blocking the event loop."""
        ...


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST once and return the status code. Never follows a redirect; enforces
        the guard on the addresses it connects to and a total timeout. Raises
        ``WebhookDeliveryError`` when there is no answer."""
        ...


class WebhookRepository(Protocol):
    async def add(self, webhook: Webhook) -> None:
        """Store it with its secrets sealed, never in clear."""
        ...

    async def get(self, tenant_id: UUID, webhook_id: UUID) -> Webhook | None: ...

    async def list_for_tenant(self, tenant_id: UUID) -> list[Webhook]:
        """Every webhook of the tenant, oldest first."""
        ...

    async def update(self, webhook: Webhook) -> None:
        """Write its secrets (after a rotation)."""
        ...

    async def delete(self, tenant_id: UUID, webhook_id: UUID) -> bool:
        """Delete it and its deliveries; False when the tenant has no such webhook."""
        ...


class WebhookDeliveryQueue(Protocol):
    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
        """Lease up to ``limit`` pending deliveries whose attempt is due, counting the
        attempt. No two workers (in any process) get the same attempt while its
        lease runs."""
        ...

    async def record(self, outcomes: list[DeliveryOutcome]) -> None:
        """Write how the attempts went, each only if its lease was not taken over
        meanwhile (same attempt number)."""
        ...

    async def list_for_webhook(
        self, webhook_id: UUID, *, limit: int, before: Position | None = None
    ) -> list[WebhookDelivery]:
        """Deliveries of one webhook, newest first, older than ``before`` when given."""
        ...

    async def pending_count(self) -> int: ...


# --- passkeys (WebAuthn) ------------------------------------------------------


@attrs.frozen
class SignInCandidate:
    """What a presented credential id names: the passkey, its account, its user handle."""

    passkey: Passkey
    account: Account
    user_handle: bytes | None


class PasskeyRepository(Protocol):
    """Passkeys, at most one per (tenant, credential id), and each account's user handle."""

    async def add(self, passkey: Passkey) -> None:
        """Raise ``PasskeyExistsError`` when the tenant holds the credential id (even racing)."""
        ...

    async def get(self, tenant_id: UUID, passkey_id: UUID) -> Passkey | None: ...

    async def get_by_credential(self, tenant_id: UUID, credential_id: bytes) -> Passkey | None: ...

    async def get_for_sign_in(
        self, tenant_id: UUID, credential_id: bytes
    ) -> SignInCandidate | None:
        """The passkey with this credential id, its account and the account's user handle,
        in one read (the hot path of a passkey sign-in)."""
        ...

    async def list_for_account(self, tenant_id: UUID, user_id: UUID) -> list[Passkey]:
        """The account's passkeys, oldest first."""
        ...

    async def list_for_email(self, tenant_id: UUID, email_key: str) -> list[Passkey]:
        """The passkeys of the account with this address, oldest first, in one read
        (the same read whether or not the account exists)."""
        ...

    async def count_for_account(self, tenant_id: UUID, user_id: UUID) -> int: ...

    async def count_for_accounts(self, tenant_id: UUID, user_ids: list[UUID]) -> dict[UUID, int]:
        """Passkeys per account, for those with any."""
        ...

    async def rename(self, passkey: Passkey) -> bool:
        """Write ``name``; False when the passkey is gone."""
        ...

    async def record_sign_in(self, passkey: Passkey, previous_sign_count: int) -> bool:
        """Write ``sign_count``, ``backed_up`` and ``last_used_at`` only if the stored
        counter is still ``previous_sign_count``: of concurrent sign-ins with one
        counter value, exactly one gets True."""
        ...

    async def delete(self, tenant_id: UUID, passkey_id: UUID) -> bool:
        """False when it was gone already."""
        ...

    async def user_handle(self, tenant_id: UUID, user_id: UUID, new: bytes) -> bytes:
        """The account's WebAuthn user handle, stored as ``new`` on first use.

        Racing first uses all get the one that was stored.
        """
        ...


class WebAuthnFlowRepository(Protocol):
    """Pending ceremonies, keyed by the digest of their flow id."""

    async def add(self, flow: WebAuthnFlow) -> None: ...

    async def take(self, key: str) -> WebAuthnFlow | None:
        """Delete the flow stored under ``key`` and return it, expired or not.

        Atomic: of many concurrent callers with one key, at most one gets it.
        """
        ...

    async def delete_expired(self, now: datetime) -> int: ...


@attrs.frozen
class CredentialDescriptor:
    """A ``PublicKeyCredentialDescriptor``: a credential id and its transports."""

    id: bytes
    transports: tuple[str, ...] = ()


@attrs.frozen
class NewCredential:
    """What a verified registration response established."""

    credential_id: bytes
    public_key: bytes = attrs.field(repr=False)
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    aaguid: str


@attrs.frozen
class PresentedAssertion:
    """An authentication response read (not yet verified): which credential it names."""

    credential_id: bytes
    user_handle: bytes | None
    parsed: object = attrs.field(repr=False, eq=False)


@attrs.frozen
class VerifiedAssertion:
    sign_count: int
    backed_up: bool


class WebAuthnCeremonies(Protocol):
    """WebAuthn Level 3 options and response checks (§7.1, §7.2). Pure CPU work.

    Every response check raises ``WebAuthnInvalidError`` for anything wrong,
    malformed input included (bad base64, truncated CBOR, wrong types): never
    another exception.
    """

    def creation_options(
        self,
        rp: RelyingParty,
        *,
        user_handle: bytes,
        user_name: str,
        display_name: str,
        challenge: bytes,
        exclude: list[CredentialDescriptor],
        timeout_ms: int,
    ) -> dict[str, object]:
        """``PublicKeyCredentialCreationOptionsJSON``: resident key and UV required,
        attestation ``none``, ES256, EdDSA and RS256 offered."""
        ...

    def request_options(
        self,
        rp: RelyingParty,
        *,
        challenge: bytes,
        allow: list[CredentialDescriptor],
        timeout_ms: int,
    ) -> dict[str, object]:
        """``PublicKeyCredentialRequestOptionsJSON`` with UV required."""
        ...

    def verify_registration(
        self, credential: Mapping[str, object], *, rp: RelyingParty, challenge: bytes
    ) -> NewCredential:
        """Check a ``navigator.credentials.create()`` response (UP and UV required)."""
        ...

    def read_assertion(self, credential: Mapping[str, object]) -> PresentedAssertion:
        """Read an authentication response's credential id and user handle."""
        ...

    def verify_assertion(
        self,
        assertion: PresentedAssertion,
        *,
        rp: RelyingParty,
        challenge: bytes,
        public_key: bytes,
    ) -> VerifiedAssertion:
        """Check the assertion (UP and UV required). The signature counter is the
        caller's to judge (``Passkey.check_sign_count``)."""


# --- the authorization server (section 17) --------------------------------------------


class OAuthClientRepository(Protocol):
    async def get(self, client_id: str) -> Client | None:
        """The client with this id, of any tenant (the client names its tenant)."""
        ...

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Client]:
        """Up to ``limit`` clients of the tenant ordered by (created_at, client_id)."""
        ...

    async def add(self, client: Client) -> None: ...

    async def update(self, client: Client) -> None: ...

    async def delete(self, tenant_id: UUID, client_id: str) -> bool:
        """Remove it with its codes, consents and session links; False when none."""
        ...


class OAuthClientReader(Protocol):
    """The read behind every client authentication at the token endpoint."""

    async def get(self, client_id: str) -> Client | None:
        """The client, of any tenant: one indexed read outside any transaction (a secret
        rotated or a client deleted anywhere is seen at once)."""
        ...


class AuthorizationCodeRepository(Protocol):
    """Codes stored under their keyed digest, never in clear."""

    async def add(self, code: AuthorizationCode) -> None: ...

    async def consume(
        self, digest: str, now: datetime, session_id: UUID
    ) -> tuple[AuthorizationCode | None, bool]:
        """Mark the code spent for ``session_id`` (the session its tokens will belong
        to) and return it with True when this call spent it.

        Atomic: of concurrent callers exactly one gets True. A code spent
        before comes back with False (a replay) and the session it was spent for;
        an unknown digest (None, False).
        """
        ...

    async def delete_expired(self, now: datetime) -> int:
        """Drop codes whose lifetime (and the replay window after it) has passed."""
        ...


class ClientSessionRepository(Protocol):
    async def add(self, link: ClientSession) -> None: ...

    async def get(self, tenant_id: UUID, session_id: UUID) -> ClientSession | None: ...

    async def list_for_user(
        self, tenant_id: UUID, user_id: UUID, client_id: str | None = None
    ) -> list[ClientSession]: ...

    async def list_for_client(self, tenant_id: UUID, client_id: str) -> list[ClientSession]: ...

    async def list_for_browser_session(
        self, tenant_id: UUID, browser_session_id: UUID
    ) -> list[ClientSession]: ...

    async def claim_ended(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[EndedClientSession]:
        """Lease up to ``limit`` links whose session ended (revoked, expired, or gone with
        its account) and whose next logout attempt is due, counting the attempt. No two
        workers get the same link while its lease runs. Links stay until ``forget``."""
        ...

    async def retry_at(self, session_id: UUID, when: datetime) -> None:
        """The next back-channel attempt for this link."""
        ...

    async def forget(self, session_ids: list[UUID]) -> None:
        """Drop the links (logout delivered, given up, or nobody to tell)."""
        ...


class ConsentRepository(Protocol):
    async def get(self, tenant_id: UUID, user_id: UUID, client_id: str) -> Consent | None: ...

    async def put(self, consent: Consent) -> None:
        """Insert or replace the consent of (tenant, user, client)."""
        ...

    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[Consent]:
        """Oldest first."""
        ...

    async def delete(self, tenant_id: UUID, user_id: UUID, client_id: str) -> bool: ...


class OAuthTokenCodec(Protocol):
    """The authorization server's tokens and specification checks. CPU work, except
    ``verify_client_assertion`` which may fetch the client's JWKS (bounded by a timeout)."""

    def encode_access_token(self, claims: Mapping[str, object]) -> str:
        """An RFC 9068 access token (header ``typ: at+jwt``); ``iss`` is added."""
        ...

    def encode_id_token(self, claims: Mapping[str, object], algorithm: str) -> str: ...

    def encode_refresh_token(self, claims: Mapping[str, object]) -> str:
        """A client's refresh token: never accepted by ``/auth/refresh-token``."""
        ...

    def encode_logout_token(self, claims: Mapping[str, object], algorithm: str) -> str: ...

    def decode_access_token(self, token: str) -> dict[str, object]:
        """Verify an RFC 9068 access token of this issuer; raise ``InvalidTokenError``."""
        ...

    def decode_refresh_token(self, token: str) -> dict[str, object]:
        """Verify a client refresh token; raise ``InvalidTokenError``."""
        ...

    def decode_id_token_hint(self, token: str) -> dict[str, object]:
        """An ID token this issuer signed (expired ones too: a logout hint may be old);
        raise ``InvalidTokenError``."""
        ...

    def pkce_s256_matches(self, verifier: str, challenge: str) -> bool: ...

    def at_hash(self, access_token: str, algorithm: str) -> str: ...

    async def verify_client_assertion(self, assertion: str, client: Client, audience: str) -> None:
        """RFC 7523 client authentication; raise ``OAuthProtocolError`` (invalid_client)."""
        ...


@attrs.frozen
class BrowserSignIn:
    """Who is signed in in a browser: its session of section 16 and its account."""

    session_id: UUID
    user_id: UUID
    auth_time: datetime
    aal: str
    amr: tuple[str, ...]
    # The active account, when the lookup read it anyway (authorize then reads none).
    account: Account | None = attrs.field(default=None, eq=False, repr=False)


class BrowserSessions(Protocol):
    """The hosted pages' browser session, as the authorization endpoint sees it."""

    async def signed_in(self, tenant_id: UUID, cookies: Mapping[str, str]) -> BrowserSignIn | None:
        """The live sign-in behind the browser's cookies for ``tenant_id``, or None
        (no cookie, unknown, ended, expired, account gone or disabled)."""
        ...


class BrowserSessionRepository(Protocol):
    """The cookies of the hosted pages, by the keyed digest of their value.

    A row lives as long as its session row: deleting the session (or the
    account) deletes it. Whether it is still usable is the session's to say.
    """

    async def add(self, browser: BrowserSession) -> None: ...

    async def get(self, tenant_id: UUID, key_digest: str) -> BrowserSession | None: ...

    async def session_ids_for_account(self, tenant_id: UUID, user_id: UUID) -> set[UUID]:
        """The ids of the account's sessions that a browser holds (``"kind": "browser"``)."""
        ...

    async def delete(self, tenant_id: UUID, key_digest: str) -> bool: ...


class UnitOfWork(Protocol):
    """One transaction. ``async with`` it; nothing is kept unless ``commit`` is awaited."""

    tenants: TenantRepository
    accounts: AccountRepository
    challenges: OtpChallengeRepository
    sessions: SessionRepository
    invalidated_tokens: InvalidatedTokenRepository
    outbox: OutboxRepository
    external_identities: ExternalIdentityRepository
    oauth_states: OAuthStateRepository
    code_requests: CodeRequestQueue
    totp_factors: TotpFactorRepository
    recovery_codes: RecoveryCodeRepository
    mfa_challenges: MfaChallengeRepository
    api_keys: ApiKeyRepository
    events: EventRepository
    webhooks: WebhookRepository
    webhook_deliveries: WebhookDeliveryQueue
    passkeys: PasskeyRepository
    webauthn_flows: WebAuthnFlowRepository
    organizations: OrganizationRepository
    roles: RoleRepository
    memberships: MembershipRepository
    invitations: InvitationRepository
    session_organizations: SessionOrganizationRepository
    oauth_clients: OAuthClientRepository
    authorization_codes: AuthorizationCodeRepository
    client_sessions: ClientSessionRepository
    consents: ConsentRepository
    browser_sessions: BrowserSessionRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def try_lock(self, name: str) -> bool:
        """Take the lock ``name`` until this transaction ends, without waiting.

        True when taken (released by ``commit``, ``rollback`` or leaving the
        block); False when another transaction holds it, in this process or
        another process or host sharing the store. For periodic jobs that
        must not run twice at once: skip the run on False. Must be called
        inside ``async with``.
        """
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class ApiKeyReader(Protocol):
    """The read behind every API-key-authenticated request."""

    async def get(self, key_id: UUID) -> ApiKey | None:
        """The key with this id, of any tenant, revoked or not: one indexed read outside
        any transaction (so a revocation committed anywhere is seen at once)."""
        ...


class ActiveSessionReader(Protocol):
    """The hot paths outside any transaction: the read behind every bearer-authenticated
    request, and the refresh grant's common case (one read, one conditional write)."""

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        """The active account behind an active session that belongs to it.

        One read outside any transaction. None when the session ended,
        expired or belongs to someone else, or the account is gone or disabled.
        """
        ...

    async def session_with_account(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID
    ) -> tuple[Session, Account, OrgClaims | None] | None:
        """The session, the account it belongs to, whatever their state, and the
        session's organization claims as they are now (None: no organization, or no
        longer a member: a removed member gets none, a changed role the new
        permissions).

        One read outside any transaction; None when either is missing or the
        session belongs to another account. Judging them is the domain's.
        """
        ...

    async def browser_session(
        self, tenant_id: UUID, key_digest: str
    ) -> tuple[Session, Account] | None:
        """The session a browser cookie (its digest) is bound to, with the account of the
        cookie, whatever their state: every hosted page's lookup, one read outside any
        transaction. None for an unknown cookie. Judging them is the caller's."""
        ...

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        """``SessionRepository.rotate`` outside any transaction: the session's new
        refresh state, applied only while ``presented_jti`` is still its live token
        and it is not revoked. False when a concurrent rotation or revocation won."""
        ...


# --- Moving users in and out (import/export) ---------------------------------


@attrs.frozen
class ImportBatchResult:
    """What one written batch did: new users, users left as they were, records refused."""

    imported: int
    skipped: int
    refused: list[Refusal]


class UserImportWriter(Protocol):
    """Writes imported users in bulk; each call is one transaction of its own."""

    async def write(
        self,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> ImportBatchResult:
        """Insert ``users`` (emails unique within the batch) with their linked subjects,
        metadata and TOTP factor, all or nothing per user; a user whose email or id is
        taken follows ``on_conflict``. ``dry_run`` rolls the transaction back."""
        ...


class ImportRunRepository(Protocol):
    """The progress of import runs; each call commits on its own."""

    async def save(self, run: ImportRun) -> None: ...

    async def get(self, tenant_id: UUID, run_id: UUID) -> ImportRun | None: ...


class UserExporter(Protocol):
    def export(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[ImportedUser]:
        """Every user of the tenant, in bounded memory (pages or a server cursor); without
        ``with_secrets`` no password hash, TOTP secret or linked subject."""
        ...

    def ndjson(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[str]:
        """The same users as the ``identity`` format's NDJSON text, many whole lines per
        chunk (Postgres makes the lines itself: the million-user export bar)."""
        ...

    async def metadata(
        self, tenant_id: UUID, user_id: UUID
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        """The user's imported ``(app_metadata, user_metadata)``; (None, None) for none."""
        ...


# --- organizations (section 19) ------------------------------------------------------


@attrs.frozen
class MemberEntry:
    """A membership as a member list shows it: with the member's address."""

    membership: Membership
    email: str


@attrs.frozen
class MembershipOf:
    """One of a user's memberships with its organization."""

    organization: Organization
    membership: Membership


class OrganizationRepository(Protocol):
    async def add(self, organization: Organization) -> None:
        """Raise ``OrganizationSlugTakenError`` when (tenant, slug) exists (even racing)."""
        ...

    async def get(self, tenant_id: UUID, organization_id: UUID) -> Organization | None: ...

    async def get_by_slug(self, tenant_id: UUID, slug: str) -> Organization | None: ...

    async def lock(self, tenant_id: UUID, organization_id: UUID) -> Organization | None:
        """Read the organization and hold its row lock until the transaction ends
        (``SELECT ... FOR UPDATE``): membership changes that check the last-owner
        rule take it first, so two of them on one organization run one after the other."""
        ...

    async def update(self, organization: Organization) -> None:
        """Write name, slug and metadata; ``OrganizationSlugTakenError`` as ``add``."""
        ...

    async def delete(self, tenant_id: UUID, organization_id: UUID) -> bool:
        """Delete it with its memberships, invitations and session contexts."""
        ...

    async def list_page(
        self, tenant_id: UUID, after: Position | None, limit: int
    ) -> list[Organization]:
        """Up to ``limit`` organizations of the tenant by (created_at, id), after ``after``."""
        ...


class RoleRepository(Protocol):
    """The roles the tenant stored. Built-in roles need no row (see ``effective_roles``);
    a built-in role given permissions is stored like any other."""

    async def list(self, tenant_id: UUID) -> list[Role]:
        """Every stored role of the tenant, by name."""
        ...

    async def get(self, tenant_id: UUID, name: str) -> Role | None: ...

    async def add(self, role: Role) -> None:
        """Raise ``RoleAlreadyExistsError`` when the tenant has one of that name."""
        ...

    async def save(self, role: Role) -> None:
        """Insert or replace the role's description and permissions."""
        ...

    async def delete(self, tenant_id: UUID, name: str) -> bool:
        """Delete the role and take it from every membership of the tenant."""
        ...


class MembershipRepository(Protocol):
    async def get(
        self, tenant_id: UUID, organization_id: UUID, user_id: UUID
    ) -> Membership | None: ...

    async def add(self, membership: Membership) -> None:
        """Raise ``AlreadyMemberError`` when the user is a member already (even racing)."""
        ...

    async def set_roles(self, membership: Membership) -> None: ...

    async def delete(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> bool:
        """End the membership; the member's sessions lose the organization's context."""
        ...

    async def count_with_role(self, tenant_id: UUID, organization_id: UUID, role: str) -> int: ...

    async def list_page(
        self, tenant_id: UUID, organization_id: UUID, after: Position | None, limit: int
    ) -> list[MemberEntry]:
        """A keyset page of the members by (created_at, id): one indexed range read."""
        ...

    async def list_with_role(
        self, tenant_id: UUID, organization_id: UUID, role: str
    ) -> list[Membership]: ...

    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[MembershipOf]:
        """The user's memberships with their organizations, oldest first."""
        ...


class InvitationRepository(Protocol):
    """Pending invitations; the code is kept only as its keyed digest."""

    async def add(self, invitation: Invitation) -> None: ...

    async def get(self, tenant_id: UUID, invitation_id: UUID) -> Invitation | None: ...

    async def get_by_digest(self, tenant_id: UUID, code_digest: str) -> Invitation | None: ...

    async def record_acceptance(self, invitation: Invitation) -> bool:
        """Write ``accepted_at`` only if it was still unset: of concurrent acceptances
        of one code, exactly one gets True."""
        ...

    async def delete(self, tenant_id: UUID, invitation_id: UUID) -> bool: ...

    async def list_pending(
        self, tenant_id: UUID, organization_id: UUID, now: datetime
    ) -> list[Invitation]:
        """Unaccepted, unexpired invitations of the organization, oldest first."""
        ...

    async def delete_expired(self, now: datetime) -> int:
        """Invitations past their expiry, accepted or not (the events keep the history)."""
        ...


class SessionOrganizationRepository(Protocol):
    """Which organization a session acts in, and the claims that follow from it."""

    async def set(
        self, tenant_id: UUID, session_id: UUID, user_id: UUID, organization_id: UUID | None
    ) -> None:
        """The session acts in ``organization_id`` from now on (None: in none)."""
        ...

    async def claims(self, tenant_id: UUID, session_id: UUID, user_id: UUID) -> OrgClaims | None:
        """The organization claims of the session now: its organization, the user's roles
        there and their permissions, in ONE indexed read. None when the session has no
        organization or the user is no longer a member of it."""
        ...

    async def member_claims(
        self, tenant_id: UUID, organization_id: UUID, user_id: UUID
    ) -> OrgClaims | None:
        """As ``claims``, for an organization named directly (a switch): one indexed read."""
