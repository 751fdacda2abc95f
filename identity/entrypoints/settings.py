"""Settings: every ``IDENTITY_*`` variable parsed once into a frozen tree.

A bad value stops start-up with one line naming the variable. Secrets are
wrapped in ``Secret`` so no ``repr`` or log line can show them.

Each setting is declared once, as a field, in the group of its concern:

- A deployment setting: add a field to ``Settings`` made by
  ``setting(parser, default)``. The variable is ``IDENTITY_`` + the field name
  in upper case; ``parser`` takes the text and raises ``ValueError`` with a
  short reason (the message becomes ``IDENTITY_<NAME>: <reason>``); an unset
  or empty variable gives ``default``. Reuse the parsers of
  ``identity/application/setting_values.py`` (durations, whole numbers in a
  range, choices, URLs, lists, booleans) or add one beside them. A group of
  several related settings may be a field holding a frozen attrs class of its
  own, read by ``load_settings`` as ``policy`` is.
- A rule a tenant may override: add a field to ``Policy``
  (``identity/application/policy.py``) made by
  ``policy_setting(default, env=parser, tenant=parser)``. That one declaration
  gives the variable (read here into ``settings.policy``), the tenant setting
  of that name (validated by ``parse_tenant_setting``, applied by
  ``policy_for``) and the value use cases read from ``policy_for(...)``.

``setting_names()`` lists every variable (a test checks the deployment files
name only real ones).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import attrs
from sqlalchemy.engine import make_url

from identity.application.policy import ENV_PARSER, Policy, redirect_allowlist
from identity.application.setting_values import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_duration_or_zero,
    parse_int,
    parse_list,
    parse_text,
    parse_url,
)
from identity.domain.identities import RESERVED_PROVIDER_NAMES, valid_provider_name
from identity.domain.passkeys import origin_problem
from identity.domain.ratelimits import RateLimit, parse_rate_limit

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./identity.db"
GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
GITHUB_BASE_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
DEFAULT_OIDC_SCOPES = "openid email profile"
MIN_SECRET_LENGTH = 32

T = TypeVar("T")


class SettingsError(Exception):
    """One line naming the variable and what is wrong with it."""


@attrs.frozen(repr=False)
class Secret:
    """A secret value; its repr and str never show it."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class OidcProviderSettings:
    """One provider of ``IDENTITY_OIDC_PROVIDERS`` and its ``IDENTITY_OIDC_<NAME>_*`` values."""

    name: str
    client_id: str
    client_secret: Secret
    discovery_url: str
    scopes: str = DEFAULT_OIDC_SCOPES
    redirect_uri: str | None = None


def redact_url(url: str) -> str:
    """The URL with any password masked, for ``repr`` and logs."""
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "'**********'"


# --- value parsers: each raises ValueError with a short reason ---------------


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in parse_list(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_database_url(text: str) -> str:
    value = text.strip()
    try:
        url = make_url(value)
    except Exception:
        raise ValueError("not a database URL") from None
    if url.drivername not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        raise ValueError("expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")
    return value


def parse_secret(text: str) -> Secret:
    return Secret(text)


def parse_secret_key(text: str) -> Secret:
    # Stripped: a trailing newline from a mounted secret file must not change the key,
    # and 32 spaces are not a secret.
    value = text.strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return Secret(value)


def parse_signing_algorithm(text: str) -> str:
    """The algorithm of new signing keys: ``EdDSA`` (Ed25519) or ``RS256``."""
    for algorithm in ("EdDSA", "RS256"):
        if text.strip().lower() == algorithm.lower():
            return algorithm
    raise ValueError("expected EdDSA or RS256")


def parse_milliseconds(text: str) -> float:
    """A bare number is milliseconds; ``1s`` or ``250ms`` carry their unit."""
    stripped = text.strip()
    if stripped.replace(".", "", 1).isdigit():
        return parse_duration(stripped)  # a bare number: read as is, in milliseconds
    return parse_duration(stripped) * 1000.0


def parse_directory(text: str) -> str:
    path = os.path.abspath(os.path.expanduser(text.strip()))
    if not os.path.isdir(path):
        raise ValueError(f"{text!r} is not a directory")
    return path


def parse_log_level(text: str) -> str:
    return parse_choice("debug", "info", "warning", "error")(text).upper()


def parse_redis_url(text: str) -> Secret:
    return Secret(parse_url("redis", "rediss", "unix")(text))


def parse_allowlist(text: str) -> tuple[str, ...]:
    return redirect_allowlist(parse_list(text))


# Field metadata key: the parser of the field's ``IDENTITY_<NAME>`` variable.
PARSER = "parser"


def setting(parser: Callable[[str], Any], default: Any = attrs.NOTHING, **field: Any) -> Any:
    """A field read from ``IDENTITY_<FIELD NAME>`` with ``parser``; ``default`` when unset."""
    return attrs.field(default=default, metadata={PARSER: parser}, **field)


_HTTP_URL = parse_url("https", "http")


@attrs.frozen
class Settings:
    # --- keys and tokens
    secret_key: Secret = setting(parse_secret_key)
    issuer: str = setting(parse_text, "http://127.0.0.1:8000")
    # No IDENTITY_ISSUER: the issuer is the address actually served (see ``served_at``).
    issuer_is_default: bool = attrs.field(default=False, repr=False)
    audience: str = setting(parse_text, "identity")
    clock_skew: float = setting(parse_duration_or_zero, 30.0)
    signing_algorithm: Literal["EdDSA", "RS256"] = setting(parse_signing_algorithm, "EdDSA")
    bcrypt_rounds: int = setting(parse_int(4, 31), 12)
    hasher_threads: int = setting(parse_int(0, 256), 0)  # 0: one per CPU
    # --- the rules a tenant may override (IDENTITY_ACCESS_TOKEN_TTL, ...): declared
    # once in identity/application/policy.py, each read from its own variable.
    policy: Policy = attrs.field(factory=Policy)
    # --- the HTTP server
    host: str = setting(parse_text, "127.0.0.1")
    port: int = setting(parse_int(1, 65535), 8000)
    cors_origins: tuple[str, ...] = setting(parse_list, ())
    trusted_proxies: tuple[IpNetwork, ...] = setting(parse_networks, ())
    hsts: bool = setting(parse_bool, False)
    slow_request_ms: float = setting(parse_milliseconds, 500.0)
    # --- the database
    # A Postgres URL may carry a password: repr shows it masked.
    database_url: str = setting(parse_database_url, DEFAULT_DATABASE_URL, repr=redact_url)
    db_pool_size: int = setting(parse_int(1, 1000), 20)
    db_pool_timeout: float = setting(parse_duration, 5.0)
    db_statement_timeout: float = setting(parse_duration, 30.0)
    event_retention: float = setting(parse_duration, 90 * 86400.0)
    # --- mail
    smtp_host: str | None = setting(parse_text, None)
    smtp_port: int = setting(parse_int(1, 65535), 587)
    smtp_username: str | None = setting(parse_text, None)
    smtp_password: Secret | None = setting(parse_secret, None)
    smtp_tls: Literal["none", "starttls", "tls"] = setting(
        parse_choice("none", "starttls", "tls"), "starttls"
    )
    smtp_timeout: float = setting(parse_duration, 10.0)
    # --- rate limits (the per-tenant ones are in the policy) and Redis
    redis_url: Secret | None = setting(parse_redis_url, None)
    rate_limit_global: RateLimit = setting(parse_rate_limit, RateLimit(100, 60))
    # --- sign-in providers (the Google client is in the policy: a tenant may bring its own)
    google_discovery_url: str = setting(_HTTP_URL, GOOGLE_DISCOVERY_URL)
    google_redirect_uri: str | None = setting(_HTTP_URL, None)
    github_client_id: str | None = setting(parse_text, None)
    github_client_secret: Secret | None = setting(parse_secret, None)
    github_base_url: str = setting(_HTTP_URL, GITHUB_BASE_URL)
    github_api_url: str = setting(_HTTP_URL, GITHUB_API_URL)
    github_redirect_uri: str | None = setting(_HTTP_URL, None)
    # IDENTITY_OIDC_PROVIDERS and each one's IDENTITY_OIDC_<NAME>_*: see load_oidc_providers.
    oidc_providers: tuple[OidcProviderSettings, ...] = ()
    provider_timeout: float = setting(parse_duration, 5.0)
    # --- webhooks
    webhook_allow_private: bool = setting(parse_bool, False)
    # --- the OpenID Provider (section 17): RFC 7591 dynamic client registration
    oauth_registration: Literal["off", "token", "open"] = setting(
        parse_choice("off", "token", "open"), "off"
    )
    # --- logging
    log_format: Literal["json", "text"] = setting(parse_choice("json", "text"), "json")
    log_level: str = setting(parse_log_level, "INFO")
    # --- hosted pages (section 16)
    # A directory whose templates replace the packaged ones.
    ui_templates_dir: str | None = setting(parse_directory, None)

    @property
    def is_embedded_database(self) -> bool:
        return is_sqlite(self.database_url)

    def served_at(self, host: str, port: int) -> Settings:
        """These settings for a server bound to ``host:port`` (the CLI may override both).

        A default issuer follows the address, so tokens, the discovery document
        and the JWKS location name the server that issued them.
        """
        issuer = default_issuer(host, port) if self.issuer_is_default else self.issuer
        return attrs.evolve(self, host=host, port=port, issuer=issuer)


def default_issuer(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address needs brackets in a URL
    return f"http://{shown}:{port}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


ENV_PREFIX = "IDENTITY_"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _declared(cls: type, key: str) -> dict[str, Callable[[str], Any]]:
    """Field name -> parser of the fields of ``cls`` read from the environment."""
    return {f.name: f.metadata[key] for f in attrs.fields(cls) if key in f.metadata}


def setting_names() -> list[str]:
    """Every ``IDENTITY_*`` variable of a setting (the per-provider OIDC ones aside)."""
    fields = [*_declared(Settings, PARSER), *_declared(Policy, ENV_PARSER), "oidc_providers"]
    return [env_name(field) for field in fields]


def _parse_env(
    env: Mapping[str, str], parsers: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, parser in parsers.items():
        raw = env.get(env_name(field))
        if raw is None or (raw.strip() == "" and field != "secret_key"):
            continue
        try:
            values[field] = parser(raw)
        except ValueError as exc:
            raise SettingsError(f"{env_name(field)}: {exc}") from None
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment once; raise ``SettingsError`` naming the bad variable."""
    env = os.environ if environ is None else environ
    values = _parse_env(env, _declared(Settings, PARSER))
    values["policy"] = Policy(**_parse_env(env, _declared(Policy, ENV_PARSER)))
    database_url = values.get("database_url", DEFAULT_DATABASE_URL)
    if "secret_key" not in values:
        if not is_sqlite(database_url):
            raise SettingsError(
                f"{env_name('secret_key')}: required when {env_name('database_url')} is not "
                "the embedded SQLite default (at least 32 random characters)"
            )
        values["secret_key"] = Secret(embedded_secret_key(database_url))
    if "issuer" not in values:
        values["issuer"] = default_issuer(values.get("host", "127.0.0.1"), values.get("port", 8000))
        values["issuer_is_default"] = True
    _require_both(values, "github_client_id", "github_client_secret")
    values["oidc_providers"] = load_oidc_providers(env)
    settings = Settings(**values)
    _check_relying_party(settings)
    return settings


def _check_relying_party(settings: Settings) -> None:
    """Origins must be on the RP ID (given, or the issuer's host)."""
    policy = settings.policy
    rp_id = policy.webauthn_rp_id or urlsplit(settings.issuer).hostname or "localhost"
    for origin in policy.webauthn_origins:
        problem = origin_problem(origin, rp_id)
        if problem is not None:
            raise SettingsError(f"{env_name('webauthn_origins')}: {problem}")


def _require_both(values: dict[str, Any], first: str, second: str) -> None:
    """A client is an id and a secret: one without the other is a mistake."""
    for present, missing in ((first, second), (second, first)):
        if present in values and missing not in values:
            raise SettingsError(f"{env_name(missing)}: required when {env_name(present)} is set")


def oidc_env_name(provider: str, field: str) -> str:
    """``IDENTITY_OIDC_<NAME>_<FIELD>`` of one named provider."""
    return f"{ENV_PREFIX}OIDC_{provider.upper()}_{field.upper()}"


def load_oidc_providers(env: Mapping[str, str]) -> tuple[OidcProviderSettings, ...]:
    """The providers named in ``IDENTITY_OIDC_PROVIDERS``, each with its own variables."""
    list_name = env_name("oidc_providers")
    names = parse_list(env.get(list_name, ""))
    providers = []
    for name in names:
        if not valid_provider_name(name):
            raise SettingsError(
                f"{list_name}: {name!r} is not a provider name "
                "(1-32 lower-case letters and digits, starting with a letter)"
            )
        if name in RESERVED_PROVIDER_NAMES:
            raise SettingsError(
                f"{list_name}: {name!r} has settings of its own ({ENV_PREFIX}{name.upper()}_*)"
            )
        if names.count(name) > 1:
            raise SettingsError(f"{list_name}: {name!r} is named twice")
        values: dict[str, Any] = {"name": name}
        parsers: dict[str, Callable[[str], Any]] = {
            "client_id": parse_text,
            "client_secret": parse_secret,
            "discovery_url": parse_url("https", "http"),
            "scopes": parse_scopes,
            "redirect_uri": parse_url("https", "http"),
        }
        for field, parser in parsers.items():
            variable = oidc_env_name(name, field)
            raw = env.get(variable, "")
            if not raw.strip():
                if field in ("client_id", "client_secret", "discovery_url"):
                    raise SettingsError(
                        f"{variable}: required for the provider {name!r} named in {list_name}"
                    )
                continue
            try:
                values[field] = parser(raw)
            except ValueError as exc:
                raise SettingsError(f"{variable}: {exc}") from None
        providers.append(OidcProviderSettings(**values))
    return tuple(providers)


def parse_scopes(text: str) -> str:
    scopes = text.split()
    if "openid" not in scopes:
        raise ValueError("must include openid")
    return " ".join(scopes)


def embedded_secret_key(database_url: str) -> str:
    """The SQLite default keeps a generated secret beside the database file.

    Generated once (mode 0600) so restarts agree on code hashes and can decrypt
    the signing keys. An in-memory database gets a fresh secret per process.
    """
    database = make_url(database_url).database
    if not database or database == ":memory:":
        return secrets.token_urlsafe(48)
    path = Path(database).expanduser().resolve().with_name(Path(database).name + ".secret")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _write_secret_once(path, secrets.token_urlsafe(48))
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{env_name('secret_key')}: the generated secret key in {path} is damaged; "
            "remove the file or set the variable"
        )
    return value


def _write_secret_once(path: Path, value: str) -> None:
    """Publish a complete file atomically; the first of racing processes wins.

    Written to a private temporary file and hard-linked into place: a process
    starting at the same moment never reads a half-written (empty) file.
    """
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
