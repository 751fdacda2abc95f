"""The rules a tenant runs under: deployment defaults, overridable per tenant."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from identity.application.redirects import is_valid_allowlist_entry
from identity.domain.branding import BRANDING_SETTINGS
from identity.domain.identities import OAuthClient
from identity.domain.ratelimits import RateLimit, parse_rate_limit
from identity.domain.tenants import Tenant


@attrs.frozen
class Policy:
    access_token_ttl: timedelta
    refresh_token_ttl: timedelta
    otp_ttl: timedelta
    otp_max_attempts: int
    refresh_reuse_grace: timedelta
    email_from: str
    rate_limit_login: RateLimit
    rate_limit_otp_request: RateLimit
    rate_limit_otp_verify: RateLimit
    google_client_id: str | None = None
    google_client_secret: str | None = attrs.field(default=None, repr=False)
    oauth_redirect_allowlist: tuple[str, ...] = ()
    # The other providers' clients by settings key ("github", "oidc_<name>"): (id, secret).
    provider_clients: Mapping[str, tuple[str | None, str | None]] = attrs.field(
        factory=dict, repr=False
    )
    # Section 17: the tenant's API scopes and resource indicators (RFC 8707).
    oauth_scopes: tuple[str, ...] = ()
    oauth_resources: tuple[str, ...] = ()

    def client_for(self, settings_key: str) -> OAuthClient | None:
        """The provider's client (id and secret both set), or None: not configured."""
        if settings_key == "google":
            client_id, secret = self.google_client_id, self.google_client_secret
        else:
            client_id, secret = self.provider_clients.get(settings_key, (None, None))
        return OAuthClient(client_id, secret) if client_id and secret else None

    @property
    def otp_ttl_minutes(self) -> int:
        return max(1, round(self.otp_ttl.total_seconds() / 60))


def _seconds(value: Any) -> timedelta:
    seconds = float(value)
    if seconds <= 0:
        raise ValueError("must be a positive number of seconds")
    return timedelta(seconds=seconds)


def _seconds_or_zero(value: Any) -> timedelta:
    """Zero is a real choice here: no grace window."""
    seconds = float(value)
    if seconds < 0:
        raise ValueError("must be zero or a positive number of seconds")
    return timedelta(seconds=seconds)


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(item).strip() for item in value if str(item).strip())
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


def redirect_allowlist(entries: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse an entry that could never match, rather than ignore it silently."""
    for entry in entries:
        if not is_valid_allowlist_entry(entry):
            raise ValueError(f"{entry!r} is not an absolute http(s) URL prefix")
    return entries


# Setting name (as stored in tenants.settings and typed in the CLI) -> parser.
TENANT_SETTINGS: dict[str, Any] = {
    "access_token_ttl": _seconds,
    "refresh_token_ttl": _seconds,
    "otp_ttl": _seconds,
    "otp_max_attempts": _positive_int,
    "refresh_reuse_grace": _seconds_or_zero,
    "email_from": _text,
    "rate_limit_login": parse_rate_limit,
    "rate_limit_otp_request": parse_rate_limit,
    "rate_limit_otp_verify": parse_rate_limit,
    "google_client_id": _text,
    "google_client_secret": _text,
    "oauth_redirect_allowlist": lambda value: redirect_allowlist(_list(value)),
    "oauth_scopes": lambda value: oauth_scopes(_list(value)),
    "oauth_resources": lambda value: oauth_resources(_list(value)),
}


_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$")  # RFC 6749 scope-token


def oauth_scopes(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        if not _SCOPE_TOKEN.match(entry):
            raise ValueError(f"{entry!r} is not a scope token (RFC 6749 section 3.3)")
    return entries


def oauth_resources(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        parts = urlsplit(entry)
        if not parts.scheme or not parts.netloc or parts.fragment or "#" in entry:
            raise ValueError(f"{entry!r} is not an absolute URI without fragment (RFC 8707)")
    return entries


# Per-tenant clients of the other providers, named as their variables without
# ``IDENTITY_``: ``github_client_id``, ``oidc_<name>_client_secret``...
_PROVIDER_CLIENT_SETTING = re.compile(r"^(github|oidc_[a-z][a-z0-9]{0,31})_client_(id|secret)$")


def is_secret_setting(key: str) -> bool:
    """A provider client secret: stored sealed, shown masked."""
    return key.endswith("_client_secret")


def _parser_for(key: str) -> Any:
    if key in BRANDING_SETTINGS:  # the hosted pages' branding (section 16)
        return BRANDING_SETTINGS[key]
    if key in TENANT_SETTINGS:
        return TENANT_SETTINGS[key]
    return _text if _PROVIDER_CLIENT_SETTING.match(key) else None


def parse_tenant_setting(key: str, value: Any) -> Any:
    """Parse one per-tenant override; ValueError names what is wrong."""
    parser = _parser_for(key)
    if parser is None:
        known = [*sorted(TENANT_SETTINGS), *BRANDING_SETTINGS]
        known += ["github_client_id", "github_client_secret"]
        known += ["oidc_<name>_client_id", "oidc_<name>_client_secret"]
        raise ValueError(f"unknown setting {key!r}; known: {', '.join(known)}")
    try:
        return parser(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None


def policy_for(base: Policy, tenant: Tenant) -> Policy:
    """The deployment policy with the tenant's stored overrides applied."""
    overrides: dict[str, Any] = {}
    clients = dict(base.provider_clients)
    for key, raw in tenant.settings.items():
        parser = _parser_for(key)
        if parser is None or key in BRANDING_SETTINGS:
            continue
        try:
            value = parser(raw)
        except (TypeError, ValueError):
            continue  # validated on write; an old bad value falls back to the default
        client = _PROVIDER_CLIENT_SETTING.match(key)
        if client is None:
            overrides[key] = value
            continue
        # Each half overrides on its own: a tenant may bring only its client id.
        client_id, secret = clients.get(client.group(1), (None, None))
        clients[client.group(1)] = (
            (value, secret) if client.group(2) == "id" else (client_id, value)
        )
    if clients != base.provider_clients:
        overrides["provider_clients"] = clients
    return attrs.evolve(base, **overrides) if overrides else base
