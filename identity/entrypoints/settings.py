"""Settings: every ``IDENTITY_*`` variable parsed once into a frozen tree.

A bad value stops start-up with one line naming the variable. Secrets are
wrapped in ``Secret`` so no ``repr`` or log line can show them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
from sqlalchemy.engine import make_url

from identity.application.policy import redirect_allowlist
from identity.domain.identities import RESERVED_PROVIDER_NAMES, valid_provider_name
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


@attrs.frozen
class Settings:
    secret_key: Secret
    # A Postgres URL may carry a password: repr shows it masked.
    database_url: str = attrs.field(default=DEFAULT_DATABASE_URL, repr=redact_url)
    host: str = "127.0.0.1"
    port: int = 8000
    issuer: str = "http://127.0.0.1:8000"
    # No IDENTITY_ISSUER: the issuer is the address actually served (see ``served_at``).
    issuer_is_default: bool = attrs.field(default=False, repr=False)
    audience: str = "identity"
    access_token_ttl: float = 900.0
    refresh_token_ttl: float = 30 * 86400.0
    otp_ttl: float = 600.0
    otp_max_attempts: int = 5
    refresh_reuse_grace: float = 10.0
    clock_skew: float = 30.0
    signing_algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    bcrypt_rounds: int = 12
    hasher_threads: int = 0  # 0: one per CPU
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = 10.0
    email_from: str = "identity <no-reply@localhost>"
    redis_url: Secret | None = None
    google_client_id: str | None = None
    google_client_secret: Secret | None = None
    google_discovery_url: str = GOOGLE_DISCOVERY_URL
    google_redirect_uri: str | None = None
    oidc_providers: tuple[OidcProviderSettings, ...] = ()
    github_client_id: str | None = None
    github_client_secret: Secret | None = None
    github_base_url: str = GITHUB_BASE_URL
    github_api_url: str = GITHUB_API_URL
    github_redirect_uri: str | None = None
    provider_timeout: float = 5.0
    oauth_redirect_allowlist: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[IpNetwork, ...] = ()
    hsts: bool = False
    slow_request_ms: float = 500.0
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    db_pool_size: int = 20
    db_pool_timeout: float = 5.0
    db_statement_timeout: float = 30.0
    rate_limit_global: RateLimit = RateLimit(100, 60)
    rate_limit_login: RateLimit = RateLimit(5, 60)
    rate_limit_otp_request: RateLimit = RateLimit(5, 3600)
    rate_limit_otp_verify: RateLimit = RateLimit(10, 900)
    event_retention: float = 90 * 86400.0
    webhook_allow_private: bool = False
    # Section 17: RFC 7591 dynamic client registration (off, token, open).
    oauth_registration: Literal["off", "token", "open"] = "off"
    # Hosted pages (section 16): a directory whose templates replace the packaged ones.
    ui_templates_dir: str | None = None

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


# --- value parsers: each raises ValueError with a short reason ---------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``900`` (seconds), ``15m``, ``30d``, ``10s``, ``250ms``, ``2h`` to seconds; above zero."""
    seconds = parse_duration_or_zero(text)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_duration_or_zero(text: str) -> float:
    """A duration where zero is a legitimate choice (no leeway, no grace window)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a duration like 900, 30s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in parse_list(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not any(value.startswith(f"{scheme}://") for scheme in schemes):
            raise ValueError(f"expected a URL starting with {' or '.join(schemes)}://")
        return value

    return parse


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


def parse_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


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


_PARSERS: dict[str, Callable[[str], Any]] = {
    "secret_key": parse_secret_key,
    "database_url": parse_database_url,
    "host": parse_text,
    "port": parse_int(1, 65535),
    "issuer": parse_text,
    "audience": parse_text,
    "access_token_ttl": parse_duration,
    "refresh_token_ttl": parse_duration,
    "otp_ttl": parse_duration,
    "otp_max_attempts": parse_int(1, 100),
    "refresh_reuse_grace": parse_duration_or_zero,
    "clock_skew": parse_duration_or_zero,
    "signing_algorithm": parse_signing_algorithm,
    "bcrypt_rounds": parse_int(4, 31),
    "hasher_threads": parse_int(0, 256),
    "smtp_host": parse_text,
    "smtp_port": parse_int(1, 65535),
    "smtp_username": parse_text,
    "smtp_password": parse_secret,
    "smtp_tls": parse_choice("none", "starttls", "tls"),
    "smtp_timeout": parse_duration,
    "email_from": parse_text,
    "redis_url": lambda text: Secret(parse_url("redis", "rediss", "unix")(text)),
    "google_client_id": parse_text,
    "google_client_secret": parse_secret,
    "google_discovery_url": parse_url("https", "http"),
    "google_redirect_uri": parse_url("https", "http"),
    "github_client_id": parse_text,
    "github_client_secret": parse_secret,
    "github_base_url": parse_url("https", "http"),
    "github_api_url": parse_url("https", "http"),
    "github_redirect_uri": parse_url("https", "http"),
    "provider_timeout": parse_duration,
    "oauth_redirect_allowlist": lambda text: redirect_allowlist(parse_list(text)),
    "cors_origins": parse_list,
    "trusted_proxies": parse_networks,
    "hsts": parse_bool,
    "slow_request_ms": parse_milliseconds,
    "log_format": parse_choice("json", "text"),
    "log_level": parse_log_level,
    "db_pool_size": parse_int(1, 1000),
    "db_pool_timeout": parse_duration,
    "db_statement_timeout": parse_duration,
    "rate_limit_global": parse_rate_limit,
    "rate_limit_login": parse_rate_limit,
    "rate_limit_otp_request": parse_rate_limit,
    "rate_limit_otp_verify": parse_rate_limit,
    "event_retention": parse_duration,
    "webhook_allow_private": parse_bool,
    "oauth_registration": parse_choice("off", "token", "open"),
    "ui_templates_dir": parse_directory,
}

ENV_PREFIX = "IDENTITY_"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment once; raise ``SettingsError`` naming the bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, parser in _PARSERS.items():
        raw = env.get(env_name(field))
        if raw is None or (raw.strip() == "" and field != "secret_key"):
            continue
        try:
            values[field] = parser(raw)
        except ValueError as exc:
            raise SettingsError(f"{env_name(field)}: {exc}") from None
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
    return Settings(**values)


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
