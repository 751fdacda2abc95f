"""Passkeys (WebAuthn credentials) and the server-side flows of their ceremonies.

The WebAuthn checks themselves (client data, authenticator data, attestation,
signatures) are the ``webauthn`` library's, behind a port: this module holds
what the service decides around them: which flow a response may finish, the
signature counter rule, names, and what a passkey proves (``amr``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit
from uuid import UUID

import attrs

from identity.domain.errors import DomainError

FLOW_TTL = timedelta(minutes=5)
NAME_MAX_LENGTH = 64
USER_HANDLE_BYTES = 32  # WebAuthn allows up to 64
# What an authenticator may report (WebAuthn L3 AuthenticatorTransport); others are dropped.
KNOWN_TRANSPORTS = frozenset({"ble", "hybrid", "internal", "nfc", "smart-card", "usb"})
# Authentication methods (RFC 8176) of a passkey sign-in.
AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"
AMR_USER_PRESENCE_AND_VERIFICATION = "user"


class WebAuthnInvalidError(DomainError):
    """A failed WebAuthn check or an unusable flow (400 ``webauthn_invalid``).

    Login failures all carry one detail (``LOGIN_FAILED_DETAIL``), whatever failed.
    """


class SignCountRegressedError(WebAuthnInvalidError):
    """The presented signature counter is not above the stored one: maybe a clone."""


class PasskeyNotFoundError(DomainError):
    """A login credential id the tenant does not hold (404 ``passkey_not_found``)."""


class PasskeyExistsError(DomainError):
    """The credential id is registered in the tenant already (409 ``passkey_exists``)."""


class UnknownPasskeyError(DomainError):
    """No passkey of the caller's (or the admin's user's) with that id (404 ``not_found``)."""


class InvalidPasskeyNameError(DomainError):
    """A name that is empty after trimming or longer than 64 characters."""


class Ceremony(StrEnum):
    REGISTRATION = "registration"
    AUTHENTICATION = "authentication"


def passkey_name(raw: str) -> str:
    """The trimmed name; ``InvalidPasskeyNameError`` unless 1-64 characters."""
    name = raw.strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH or any(ord(ch) < 32 for ch in name):
        raise InvalidPasskeyNameError("must be 1-64 characters after trimming")
    return name


def default_passkey_name(now: datetime) -> str:
    return f"Passkey added {now:%Y-%m-%d}"


def reported_transports(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The known transports the authenticator reported, once each, in its order."""
    seen: list[str] = []
    for value in values:
        if value in KNOWN_TRANSPORTS and value not in seen:
            seen.append(value)
    return tuple(seen)


@attrs.frozen
class RelyingParty:
    """The WebAuthn relying party of a tenant: its RP ID, display name and exact origins."""

    id: str
    name: str
    origins: tuple[str, ...]


def origin_problem(origin: str, rp_id: str) -> str | None:
    """Why ``origin`` cannot serve the RP ``rp_id`` (None when it can).

    An origin is exactly scheme, host and optional port; ``https``, or ``http``
    to ``localhost``; its host is the RP ID or a name under it.
    """
    parts = urlsplit(origin)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{origin!r} is not an http(s) origin"
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return f"{origin!r} is not an origin (scheme, host and port only)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{origin!r} has a bad port"
    host = parts.hostname
    if parts.scheme == "http" and host != "localhost":
        return f"{origin!r}: http only to localhost"
    if host != rp_id and not host.endswith("." + rp_id):
        return f"{origin!r} is not on the RP ID {rp_id!r} or under it"
    return None


def rp_id_problem(rp_id: str) -> str | None:
    """Why ``rp_id`` is not a registrable host name (None when it is)."""
    if not rp_id or len(rp_id) > 253 or rp_id != rp_id.lower():
        return f"{rp_id!r} is not a lower-case host name"
    labels = rp_id.split(".")
    for label in labels:
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            return f"{rp_id!r} is not a host name"
        if not all(ch.isalnum() or ch == "-" for ch in label) or not label.isascii():
            return f"{rp_id!r} is not a host name (IDNA-encode it)"
    return None


@attrs.define
class Passkey:
    """A WebAuthn credential of one account in one tenant.

    ``id`` is the service's own; ``credential_id`` the authenticator's.
    ``backup_eligible`` is the BE flag at registration (a syncable key),
    ``backed_up`` the BS flag of the latest ceremony.
    """

    id: UUID
    tenant_id: UUID
    user_id: UUID
    credential_id: bytes
    public_key: bytes = attrs.field(repr=False)
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    aaguid: str
    name: str
    created_at: datetime
    last_used_at: datetime | None = None

    @property
    def amr(self) -> tuple[str, ...]:
        """``swk`` for a syncable key, ``hwk`` for a device-bound one, and the user test."""
        kind = AMR_SOFTWARE_KEY if self.backup_eligible else AMR_HARDWARE_KEY
        return (kind, AMR_USER_PRESENCE_AND_VERIFICATION)

    def check_sign_count(self, presented: int) -> None:
        """When either counter is non-zero the presented one must be greater."""
        if (presented or self.sign_count) and presented <= self.sign_count:
            raise SignCountRegressedError(f"counter {presented} not above {self.sign_count}")

    def record_sign_in(self, presented: int, backed_up: bool, now: datetime) -> None:
        """A verified assertion: keep its counter and BS flag; the repository applies this
        only if the stored counter is still the one checked."""
        self.check_sign_count(presented)
        self.sign_count = presented
        self.backed_up = backed_up
        self.last_used_at = now

    def rename(self, name: str) -> None:
        self.name = passkey_name(name)


@attrs.frozen
class WebAuthnFlow:
    """One ceremony's server-side state: an id handed to the client, a challenge, 5 minutes.

    ``key`` is the digest of the flow id (the id is never stored); the
    challenge is derived from the id with the secret key, so neither is in the
    store. Bound to the tenant, the ceremony and (registration, or a login
    opened with an email) the account; spent by its first verify.
    ``email_bound``: a login flow opened with an email, whose credential must
    be ``user_id``'s (None: the email has no account or no passkeys).
    """

    key: str
    tenant_id: UUID
    ceremony: Ceremony
    user_id: UUID | None
    email_bound: bool
    created_at: datetime
    expires_at: datetime

    def ensure_finishes(
        self, tenant_id: UUID, ceremony: Ceremony, now: datetime, user_id: UUID | None = None
    ) -> None:
        """Raise ``WebAuthnInvalidError`` unless this flow may finish that ceremony now."""
        if (
            self.tenant_id != tenant_id
            or self.ceremony is not ceremony
            or now >= self.expires_at
            or (ceremony is Ceremony.REGISTRATION and self.user_id != user_id)
        ):
            raise WebAuthnInvalidError("unusable flow")

    def admits(self, passkey: Passkey) -> bool:
        """Whether a login flow may be finished with ``passkey``."""
        if passkey.tenant_id != self.tenant_id:
            return False
        return not self.email_bound or passkey.user_id == self.user_id
