"""The authorization server's own state: registered clients, codes, consents.

The protocol keeps only these; who signs in is the pages' business (section 16),
and the tokens a client receives belong to an ordinary ``Session``.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit
from uuid import UUID

import attrs

from identity.domain.errors import DomainError

CODE_TTL = timedelta(seconds=60)
# A spent code stays this long after its expiry, so a late replay is still
# recognised (and ends what it was redeemed for) before the purge drops it.
CODE_REPLAY_WINDOW = timedelta(minutes=10)

# Scopes every tenant knows; a tenant adds its API scopes (setting ``oauth_scopes``).
OPENID_SCOPES = ("openid", "profile", "email", "offline_access", "organization")


class ClientType(StrEnum):
    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


class AuthMethod(StrEnum):
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"


class GrantType(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"
    CLIENT_CREDENTIALS = "client_credentials"


ID_TOKEN_ALGORITHMS = ("RS256", "EdDSA")


class ClientNotFoundError(DomainError):
    pass


class InvalidClientMetadataError(DomainError):
    """A client's registration breaks a rule; the message says which (safe to show)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_loopback_redirect(uri: str) -> bool:
    """``http://127.0.0.1``, ``http://[::1]`` or ``http://localhost`` (RFC 8252 §7.3)."""
    parts = urlsplit(uri)
    if parts.scheme != "http" or parts.hostname is None:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, field: str = "redirect_uris") -> str:
    """An absolute URI without fragment: https, loopback http, or a private-use scheme."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidClientMetadataError(field, f"not a URI: {uri!r}") from None
    if parts.fragment or "#" in uri:
        raise InvalidClientMetadataError(field, "a redirect URI has no fragment")
    if not parts.scheme:
        raise InvalidClientMetadataError(field, "a redirect URI is absolute")
    if parts.scheme == "https" and parts.netloc:
        return uri
    if parts.scheme == "http":
        if is_loopback_redirect(uri):
            return uri
        raise InvalidClientMetadataError(field, "http only to a loopback address; else https")
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidClientMetadataError(field, f"scheme {parts.scheme!r} is not allowed")
    # A private-use scheme of a native app (RFC 8252 §7.1), such as com.example.app:/cb.
    if "." not in parts.scheme:
        raise InvalidClientMetadataError(
            field, "a custom scheme is a reversed domain name (RFC 8252)"
        )
    return uri


@attrs.define
class Client:
    """A registered application of one tenant."""

    client_id: str
    tenant_id: UUID
    name: str
    type: ClientType
    redirect_uris: tuple[str, ...]
    grant_types: tuple[GrantType, ...]
    allowed_scopes: tuple[str, ...]
    token_endpoint_auth_method: AuthMethod
    created_at: datetime
    first_party: bool = False
    post_logout_redirect_uris: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: dict[str, object] | None = None
    backchannel_logout_uri: str | None = None
    id_token_signed_response_alg: str = "RS256"
    logo_url: str | None = None
    # Keyed hash of the secret (confidential clients with a secret method); never the secret.
    secret_digest: str | None = attrs.field(default=None, repr=False)
    dynamically_registered: bool = False

    @property
    def is_public(self) -> bool:
        return self.type is ClientType.PUBLIC

    def uses_secret(self) -> bool:
        return self.token_endpoint_auth_method in (
            AuthMethod.CLIENT_SECRET_BASIC,
            AuthMethod.CLIENT_SECRET_POST,
        )

    def validate(self) -> None:
        """Refuse registrations that break the security rules (``InvalidClientMetadataError``)."""
        if not self.name.strip():
            raise InvalidClientMetadataError("name", "a client has a name")
        for uri in self.redirect_uris:
            check_redirect_uri(uri)
        for uri in self.post_logout_redirect_uris:
            check_redirect_uri(uri, "post_logout_redirect_uris")
        if self.is_public:
            if self.token_endpoint_auth_method is not AuthMethod.NONE:
                raise InvalidClientMetadataError(
                    "token_endpoint_auth_method", "a public client authenticates with none"
                )
            if GrantType.CLIENT_CREDENTIALS in self.grant_types:
                raise InvalidClientMetadataError(
                    "grant_types", "client_credentials is for confidential clients only"
                )
        elif self.token_endpoint_auth_method is AuthMethod.NONE:
            raise InvalidClientMetadataError(
                "token_endpoint_auth_method", "a confidential client authenticates"
            )
        if (
            self.token_endpoint_auth_method is AuthMethod.PRIVATE_KEY_JWT
            and not self.jwks_uri
            and not self.jwks
        ):
            raise InvalidClientMetadataError("jwks_uri", "private_key_jwt needs jwks_uri or jwks")
        if GrantType.AUTHORIZATION_CODE in self.grant_types and not self.redirect_uris:
            raise InvalidClientMetadataError(
                "redirect_uris", "the authorization code grant needs a redirect URI"
            )
        if self.id_token_signed_response_alg not in ID_TOKEN_ALGORITHMS:
            raise InvalidClientMetadataError("id_token_signed_response_alg", "RS256 or EdDSA")
        for field, value in (
            ("jwks_uri", self.jwks_uri),
            ("backchannel_logout_uri", self.backchannel_logout_uri),
            ("logo_url", self.logo_url),
        ):
            if value is not None and urlsplit(value).scheme not in ("https", "http"):
                raise InvalidClientMetadataError(field, "an http(s) URI")

    def redirect_uri_matches(self, presented: str) -> bool:
        """Exact string match; a public client's loopback URI may differ in port only."""
        if presented in self.redirect_uris:
            return True
        if not self.is_public or not is_loopback_redirect(presented):
            return False
        try:
            asked = urlsplit(presented)
        except ValueError:
            return False
        for registered in self.redirect_uris:
            if not is_loopback_redirect(registered):
                continue
            known = urlsplit(registered)
            if (
                known.scheme == asked.scheme
                and known.hostname == asked.hostname
                and known.path == asked.path
                and known.query == asked.query
                and not asked.fragment
            ):
                return True
        return False

    def allows_scopes(self, scopes: tuple[str, ...]) -> bool:
        return set(scopes) <= set(self.allowed_scopes)


@attrs.define
class AuthorizationCode:
    """An issued code: bound to its client, redirect URI, PKCE challenge, nonce, scopes
    and sign-in. Stored under a keyed digest; single use."""

    digest: str
    tenant_id: UUID
    client_id: str
    user_id: UUID
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    audience: str
    auth_time: datetime
    aal: str
    amr: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    nonce: str | None = None
    browser_session_id: UUID | None = None
    consumed_at: datetime | None = None
    # The session its tokens belong to, once redeemed: a replay ends it.
    session_id: UUID | None = None

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@attrs.define
class ClientSession:
    """What makes a ``Session`` a client's: the client, its scopes and sign-in."""

    session_id: UUID
    tenant_id: UUID
    client_id: str
    user_id: UUID
    scopes: tuple[str, ...]
    audience: str
    auth_time: datetime
    created_at: datetime
    browser_session_id: UUID | None = None
    # Back-channel logout once the session ends: tries so far, and when the next may run.
    logout_attempts: int = 0
    logout_next_at: datetime | None = None


@attrs.frozen
class EndedClientSession:
    """A client's session that ended (revoked, expired or erased with its account), due
    for its back-channel logout token."""

    link: ClientSession
    backchannel_logout_uri: str | None
    id_token_alg: str


@attrs.define
class Consent:
    """The scopes a user let a third-party client have; remembered until revoked."""

    tenant_id: UUID
    user_id: UUID
    client_id: str
    scopes: tuple[str, ...]
    granted_at: datetime

    def covers(self, scopes: tuple[str, ...]) -> bool:
        return set(scopes) <= set(self.scopes)


class OAuthProtocolError(DomainError):
    """An RFC 6749 error answer: ``error`` code, a safe ``description``, the status.

    ``invalid_client`` is 401 (with ``WWW-Authenticate``); the rest 400 unless said.
    """

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


def invalid_request(description: str) -> OAuthProtocolError:
    return OAuthProtocolError("invalid_request", description)


def invalid_client(description: str = "client authentication failed") -> OAuthProtocolError:
    return OAuthProtocolError("invalid_client", description, 401)


def invalid_grant(description: str) -> OAuthProtocolError:
    return OAuthProtocolError("invalid_grant", description)
