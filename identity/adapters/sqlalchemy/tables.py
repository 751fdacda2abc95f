"""SQLAlchemy Core tables. Constraint names are stable so errors map to domain errors."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)

from identity.adapters.sqlalchemy.types import UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

UQ_USERS_TENANT_EMAIL = "uq_users_tenant_id_normalized_email"

tenants = Table(
    "tenants",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("slug", String(63), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("settings", JSON, nullable=False, default=dict),
    UniqueConstraint("slug"),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("normalized_email", String(320), nullable=False),
    # Up to 1024: an imported hash keeps its foreign parameters (Firebase's are long).
    Column("password_hash", String(1024), nullable=True),
    Column("full_name", String(200), nullable=True),
    Column("is_verified", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("verified_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_login_at", UtcDateTime, nullable=True),
    # Kept by the MFA use cases so the hot read of /auth/me needs no join.
    Column("mfa_enabled", Boolean, nullable=False, default=False, server_default=false()),
    # The linked providers' names, comma-separated (NULL: none), kept by the
    # external identity repository so the hot read needs no aggregate.
    Column("identities", Text, nullable=True),
    # Opaque JSON carried over by an import (Auth0's names), shown on the admin user.
    Column("app_metadata", JSON, nullable=True),
    Column("user_metadata", JSON, nullable=True),
    # The language the account signed up in (its mails are written in it); NULL: English.
    Column("locale", String(16), nullable=True),
    UniqueConstraint("tenant_id", "normalized_email"),
    # The admin list's keyset order.
    Index(None, "tenant_id", "created_at", "id"),
)

otp_challenges = Table(
    "otp_challenges",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("email_key", String(320), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("code_digest", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("consumed_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "email_key", "purpose"),
    Index(None, "expires_at"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=False),
    Column("refresh_jti", String(64), nullable=False),
    Column("refresh_issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("user_agent", String(512), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("previous_refresh_jti", String(64), nullable=True),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    Column("aal", String(8), nullable=False, default="aal1", server_default="aal1"),
    # RFC 8176 methods, comma-separated in the order they were proven.
    Column("amr", String(64), nullable=False, default="", server_default=""),
    Index(None, "tenant_id", "user_id"),
    Index(None, "expires_at"),
)

invalidated_tokens = Table(
    "invalidated_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    # The whole message is sealed (it may carry a one-time code) and dropped once sent.
    Column("sealed_message", LargeBinary, nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("last_error", String(500), nullable=True),
    # The recipient's keyed digest (tenant and address): an erased account's mail
    # is found and dropped without storing its address in clear.
    Column("address_digest", String(64), nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "tenant_id", "address_digest"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(128), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key_encrypted", LargeBinary, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

UQ_EXTERNAL_IDENTITIES_SUBJECT = "uq_external_identities_tenant_id_provider_subject"
UQ_EXTERNAL_IDENTITIES_ACCOUNT = "uq_external_identities_tenant_id_user_id_provider"

external_identities = Table(
    "external_identities",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("email_at_link", String(320), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "provider", "subject"),
    # One identity per provider and account: unlinking names the provider alone.
    UniqueConstraint("tenant_id", "user_id", "provider"),
    Index(None, "user_id"),
)

oauth_states = Table(
    "oauth_states",
    metadata,
    # SHA-256 hex of the value in the browser's cookie: the cookie itself is never stored.
    Column("id", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("state_hash", String(64), nullable=False),
    Column("nonce", String(128), nullable=False),
    # Sealed with a key of its own purpose ("oauth-state").
    Column("code_verifier", LargeBinary, nullable=False),
    Column("redirect_to", String(2048), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # A flow started by a signed-in user to link an identity to that user.
    Column("link_user_id", Uuid, nullable=True),
    Index(None, "expires_at"),
)

code_requests = Table(
    "code_requests",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    # Email, purpose and any registration (password hash, name), sealed ("code-request").
    Column("sealed_request", LargeBinary, nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    # The address's keyed digest, as on the outbox: an erased account's requests go too.
    Column("address_digest", String(64), nullable=True),
    Index(None, "requested_at"),
    Index(None, "tenant_id", "address_digest"),
)

totp_factors = Table(
    "totp_factors",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # Sealed with a key of its own purpose ("totp-secret").
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime, nullable=True),
    Column("last_used_step", BigInteger, nullable=True),
    UniqueConstraint("user_id"),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Index(None, "user_id"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    # SHA-256 hex of the mfa_token: the token itself is never stored.
    Column("id", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("first_factor", String(16), nullable=False),
    Column("user_agent", String(512), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("consumed_at", UtcDateTime, nullable=True),
    Index(None, "expires_at"),
    Index(None, "user_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    # Space-separated scope names.
    Column("scopes", String(1000), nullable=False),
    # HMAC-SHA256 hex of the secret: the key itself is never stored.
    Column("secret_digest", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "created_at"),
)

security_events = Table(
    "security_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    # No foreign keys to users or sessions: an event outlives what it is about
    # (``user.deleted`` must survive its user).
    Column("user_id", Uuid, nullable=True),
    Column("session_id", Uuid, nullable=True),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("data", JSON, nullable=False),
    Index(None, "tenant_id", "occurred_at"),
    Index(None, "tenant_id", "user_id", "occurred_at"),
    Index(None, "occurred_at"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("url", String(2048), nullable=False),
    # The subscribed types, space-separated with a space at each end, so one
    # ``LIKE '% type %'`` finds the subscribers of an event on every dialect.
    Column("event_types", String(2000), nullable=False),
    # Sealed with a key of its own purpose ("webhook-secret").
    Column("secret", LargeBinary, nullable=False),
    Column("previous_secret", LargeBinary, nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "created_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Uuid, ForeignKey("security_events.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "webhook_id", "created_at"),
    Index(None, "event_id"),
)


# The progress of each import run (GET /admin/imports/{id}); errors: the first 100.
user_imports = Table(
    "user_imports",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("total", BigInteger, nullable=False, default=0),
    Column("imported", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("errors", JSON, nullable=False, default=list),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
)

# --- passkeys (WebAuthn) -------------------------------------------------------------

UQ_PASSKEYS_CREDENTIAL = "uq_passkeys_tenant_id_credential_id"

passkeys = Table(
    "passkeys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The authenticator's credential id (WebAuthn caps it at 1023 bytes).
    Column("credential_id", LargeBinary(1023), nullable=False),
    # The COSE public key: public, but never shown in an answer.
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    # Reported transports, comma-separated.
    Column("transports", String(200), nullable=False, default=""),
    Column("backup_eligible", Boolean, nullable=False),
    Column("backed_up", Boolean, nullable=False),
    # Stored, never relied on (no attestation is trusted).
    Column("aaguid", String(36), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "credential_id"),
    Index(None, "user_id", "created_at"),
)

webauthn_user_handles = Table(
    "webauthn_user_handles",
    metadata,
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    # Random, made once per account: never the email or the account id.
    Column("handle", LargeBinary(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "handle"),
)

webauthn_flows = Table(
    "webauthn_flows",
    metadata,
    # SHA-256 hex of the flow id; the challenge is derived from the id with the
    # secret key, so neither the id nor the challenge is stored.
    Column("id", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("ceremony", String(16), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("email_bound", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)

# --- organizations (section 19) ----------------------------------------------------

UQ_ORGANIZATIONS_SLUG = "uq_organizations_tenant_id_slug"

organizations = Table(
    "organizations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("slug", String(63), nullable=False),
    Column("name", String(200), nullable=False),
    # The organization's ``metadata`` (a JSON object the admin API sets).
    Column("data", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "slug"),
    # The admin list's keyset order.
    Index(None, "tenant_id", "created_at", "id"),
)

org_roles = Table(
    "org_roles",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("description", String(500), nullable=False),
    # The permission strings the tenant gives the role (a JSON list).
    Column("permissions", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column(
        "organization_id",
        Uuid,
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("organization_id", "user_id"),
    # The member list's keyset order, and a user's organizations.
    Index(None, "organization_id", "created_at", "id"),
    Index(None, "tenant_id", "user_id"),
)

membership_roles = Table(
    "membership_roles",
    metadata,
    Column(
        "membership_id",
        Uuid,
        ForeignKey("memberships.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(63), primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("organization_id", Uuid, nullable=False),
    # Counting an organization's owners; taking a deleted role from every member.
    Index(None, "organization_id", "role"),
    Index(None, "tenant_id", "role"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column(
        "organization_id",
        Uuid,
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False),
    # Role names, space-separated.
    Column("roles", String(1400), nullable=False),
    # HMAC-SHA256 hex of the code (tenant-bound): the code itself is never stored.
    Column("code_digest", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("invited_by", Uuid, nullable=True),
    Column("accepted_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "code_digest"),
    Index(None, "organization_id", "created_at"),
    Index(None, "expires_at"),
)

session_organizations = Table(
    "session_organizations",
    metadata,
    Column("session_id", Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column(
        "organization_id",
        Uuid,
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Index(None, "organization_id", "user_id"),
)

# --- the authorization server (section 17) ---------------------------------------------

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    # The registration (URIs, grant types, scopes, methods, keys) as one JSON document.
    Column("metadata", JSON, nullable=False),
    # HMAC-SHA256 hex of the secret: the secret itself is never stored.
    Column("secret_digest", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "created_at", "client_id"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    # Keyed digest of the code: the code itself is never stored.
    Column("digest", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column(
        "client_id",
        String(64),
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The binding (redirect URI, challenge, nonce, scopes, audience, sign-in) as JSON.
    Column("binding", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("consumed_at", UtcDateTime, nullable=True),
    Column("session_id", Uuid, nullable=True),
    Index(None, "expires_at"),
)

oauth_client_sessions = Table(
    "oauth_client_sessions",
    metadata,
    # No foreign key to sessions or users: a link outlives its session (and an erased
    # account) until the client has been told, by its back-channel logout token.
    Column("session_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column(
        "client_id",
        String(64),
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", Uuid, nullable=False),
    Column("scopes", String(2000), nullable=False),
    Column("audience", String(2048), nullable=False),
    Column("auth_time", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("browser_session_id", Uuid, nullable=True),
    Column("logout_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("logout_next_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "user_id"),
    Index(None, "browser_session_id"),
)

oauth_consents = Table(
    "oauth_consents",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "client_id",
        String(64),
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("scopes", String(2000), nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
)

# A hosted page's browser session: the keyed digest of its cookie, bound to one session.
browser_sessions = Table(
    "browser_sessions",
    metadata,
    Column("key_digest", String(64), primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "user_id"),
    Index(None, "session_id"),
)
