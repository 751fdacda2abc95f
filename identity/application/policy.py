"""The rules a tenant runs under: deployment defaults, overridable per tenant."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from identity.application.redirects import is_valid_allowlist_entry
from identity.application.setting_values import (
    parse_bool,
    parse_duration,
    parse_duration_or_zero,
    parse_int,
    parse_text,
)
from identity.domain.branding import BRANDING_SETTINGS
from identity.domain.identities import OAuthClient
from identity.domain.passkeys import origin_problem, rp_id_problem
from identity.domain.ratelimits import RateLimit, parse_rate_limit
from identity.domain.tenants import Tenant


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


def _boolean(value: Any) -> bool:
    # Not bool(): the string "false" must be False.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


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


def webauthn_rp_id(value: str) -> str:
    problem = rp_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def webauthn_origins(origins: tuple[str, ...], rp_id: str | None = None) -> tuple[str, ...]:
    """Exact origins; each on ``rp_id`` (or, without one, on its own host: the shape only)."""
    if not origins:
        raise ValueError("must name at least one origin")
    for origin in origins:
        problem = origin_problem(origin, rp_id or urlsplit(origin).hostname or "")
        if problem is not None:
            raise ValueError(problem)
    return origins


def _rp_id(value: Any) -> str:
    return webauthn_rp_id(_text(value))


def _origins(value: Any) -> tuple[str, ...]:
    return webauthn_origins(_list(value))


def _scopes(value: Any) -> tuple[str, ...]:
    return oauth_scopes(_list(value))


def _resources(value: Any) -> tuple[str, ...]:
    return oauth_resources(_list(value))


def _duration(text: str) -> timedelta:
    return timedelta(seconds=parse_duration(text))


def _duration_or_zero(text: str) -> timedelta:
    return timedelta(seconds=parse_duration_or_zero(text))


def _allowlist(value: Any) -> tuple[str, ...]:
    return redirect_allowlist(_list(value))


def _as_is(text: str) -> str:
    return text


# Field metadata keys: the parser of the ``IDENTITY_<NAME>`` variable, and the
# parser of the tenant's stored override (a JSON value or the CLI's text).
ENV_PARSER = "env_parser"
TENANT_PARSER = "tenant_parser"


def policy_setting(
    default: Any,
    *,
    env: Callable[[str], Any],
    tenant: Callable[[Any], Any] | None = None,
    repr: bool = True,
) -> Any:
    """One overridable setting: its default, its variable's parser, its tenant parser
    (the variable's when omitted); each parser gives the field's own type."""
    return attrs.field(
        default=default,
        repr=repr,
        metadata={ENV_PARSER: env, TENANT_PARSER: env if tenant is None else tenant},
    )


@attrs.frozen
class Policy:
    """The rules a tenant may override, each declared once.

    A field made by ``policy_setting`` is read from ``IDENTITY_<NAME>`` (see
    ``identity/entrypoints/settings.py``) and may be set per tenant under
    ``<name>`` (``TENANT_SETTINGS``); ``policy_for`` applies a tenant's overrides.
    """

    access_token_ttl: timedelta = policy_setting(
        timedelta(minutes=15), env=_duration, tenant=_seconds
    )
    refresh_token_ttl: timedelta = policy_setting(
        timedelta(days=30), env=_duration, tenant=_seconds
    )
    otp_ttl: timedelta = policy_setting(timedelta(minutes=10), env=_duration, tenant=_seconds)
    otp_max_attempts: int = policy_setting(5, env=parse_int(1, 100), tenant=_positive_int)
    refresh_reuse_grace: timedelta = policy_setting(
        timedelta(seconds=10), env=_duration_or_zero, tenant=_seconds_or_zero
    )
    email_from: str = policy_setting("identity <no-reply@localhost>", env=parse_text, tenant=_text)
    rate_limit_login: RateLimit = policy_setting(RateLimit(5, 60), env=parse_rate_limit)
    rate_limit_otp_request: RateLimit = policy_setting(RateLimit(5, 3600), env=parse_rate_limit)
    rate_limit_otp_verify: RateLimit = policy_setting(RateLimit(10, 900), env=parse_rate_limit)
    google_client_id: str | None = policy_setting(None, env=parse_text, tenant=_text)
    google_client_secret: str | None = policy_setting(None, env=_as_is, tenant=_text, repr=False)
    oauth_redirect_allowlist: tuple[str, ...] = policy_setting((), env=_allowlist)
    # The WebAuthn relying party (section 15); unset: the issuer's host and https on it
    # (filled in by the composition root, see ``passkeys.relying_party``).
    webauthn_rp_id: str | None = policy_setting(None, env=_rp_id)
    webauthn_rp_name: str | None = policy_setting(None, env=parse_text, tenant=_text)
    webauthn_origins: tuple[str, ...] = policy_setting((), env=_origins)
    # Section 17: the tenant's API scopes and resource indicators (RFC 8707).
    oauth_scopes: tuple[str, ...] = policy_setting((), env=_scopes)
    oauth_resources: tuple[str, ...] = policy_setting((), env=_resources)
    # Section 19: whether signed-in users may create organizations themselves.
    allow_user_organizations: bool = policy_setting(True, env=parse_bool, tenant=_boolean)
    # Not a setting of its own: the other providers' clients by settings key
    # ("github", "oidc_<name>"): (id, secret), from their variables and tenant keys.
    provider_clients: Mapping[str, tuple[str | None, str | None]] = attrs.field(
        factory=dict, repr=False
    )

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


# Setting name (as stored in tenants.settings and typed in the CLI) -> parser.
TENANT_SETTINGS: dict[str, Callable[[Any], Any]] = {
    field.name: field.metadata[TENANT_PARSER]
    for field in attrs.fields(Policy)
    if TENANT_PARSER in field.metadata
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
