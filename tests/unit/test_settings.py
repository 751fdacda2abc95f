"""Settings: every IDENTITY_* variable parsed, every bad value named, secrets kept out of sight."""

from __future__ import annotations

import ipaddress
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.application.setting_values import parse_duration
from identity.domain.ratelimits import RateLimit
from identity.entrypoints.settings import (
    GOOGLE_DISCOVERY_URL,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)

SECRET_KEY = "k3y-" + "x" * 40
POSTGRES_URL = "postgresql+asyncpg://identity:db-pa55word@db.internal:5432/identity"


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    """A minimal valid environment that writes nothing outside the test's tmp_path."""
    return {"IDENTITY_SECRET_KEY": SECRET_KEY, "IDENTITY_DATABASE_URL": sqlite_url}


def load(env: dict[str, str], **variables: str) -> Settings:
    return load_settings({**env, **{f"IDENTITY_{k}": v for k, v in variables.items()}})


def value_of(settings: Settings, variable: str) -> object:
    """The value of ``IDENTITY_<variable>``: a setting, or a rule of the policy (in seconds)."""
    name = variable.lower()
    holder = settings.policy if hasattr(settings.policy, name) else settings
    found = getattr(holder, name)
    return found.total_seconds() if isinstance(found, timedelta) else found


def secret_file(sqlite_url: str) -> Path:
    return Path(sqlite_url.removeprefix("sqlite+aiosqlite:///") + ".secret")


# --- defaults ------------------------------------------------------------------


def test_defaults_follow_the_contract(env: dict[str, str]) -> None:
    settings = load_settings(env)

    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.policy.access_token_ttl == timedelta(minutes=15)
    assert settings.policy.refresh_token_ttl == timedelta(days=30)
    assert settings.policy.otp_ttl == timedelta(minutes=10)
    assert settings.policy.otp_max_attempts == 5
    assert settings.policy.refresh_reuse_grace == timedelta(seconds=10)
    assert settings.clock_skew == 30
    assert settings.bcrypt_rounds == 12
    assert settings.smtp_host is None
    assert settings.smtp_password is None
    assert settings.redis_url is None
    assert settings.policy.google_client_id is None
    assert settings.google_discovery_url == GOOGLE_DISCOVERY_URL
    assert settings.policy.oauth_redirect_allowlist == ()
    assert settings.cors_origins == ()
    assert settings.trusted_proxies == ()
    assert settings.hsts is False
    assert settings.slow_request_ms == 500
    assert settings.log_format == "json"
    assert settings.rate_limit_global == RateLimit(100, 60)
    assert settings.policy.rate_limit_login == RateLimit(5, 60)
    assert settings.policy.rate_limit_otp_request == RateLimit(5, 3600)
    assert settings.policy.rate_limit_otp_verify == RateLimit(10, 900)


def test_the_default_database_is_an_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings({})

    assert settings.database_url == "sqlite+aiosqlite:///./identity.db"
    assert settings.is_embedded_database
    assert (tmp_path / "identity.db.secret").read_text().strip() == settings.secret_key.value


def test_an_empty_value_means_the_default(env: dict[str, str]) -> None:
    settings = load(env, PORT="", HSTS=" ", LOG_FORMAT="")

    assert (settings.port, settings.hsts, settings.log_format) == (8000, False, "json")


def test_settings_are_frozen(env: dict[str, str]) -> None:
    settings = load_settings(env)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_the_issuer_follows_host_and_port_unless_set(env: dict[str, str]) -> None:
    assert load(env, HOST="10.1.2.3", PORT="9000").issuer == "http://10.1.2.3:9000"
    assert load(env, PORT="9000", ISSUER="https://id.example").issuer == "https://id.example"


def test_a_default_issuer_follows_the_address_the_command_line_serves(
    env: dict[str, str],
) -> None:
    served = load(env).served_at("127.0.0.1", 9000)
    assert (served.issuer, served.port) == ("http://127.0.0.1:9000", 9000)
    assert load(env, PORT="8100").served_at("::1", 9001).issuer == "http://[::1]:9001"
    explicit = load(env, ISSUER="https://id.example").served_at("0.0.0.0", 9000)
    assert explicit.issuer == "https://id.example"


@pytest.mark.parametrize("variable", ["CLOCK_SKEW", "REFRESH_REUSE_GRACE"])
def test_zero_leeway_and_zero_grace_are_accepted(env: dict[str, str], variable: str) -> None:
    assert value_of(load(env, **{variable: "0"}), variable) == 0
    assert value_of(load(env, **{variable: "0s"}), variable) == 0


@pytest.mark.parametrize(
    "variable",
    [
        "ACCESS_TOKEN_TTL",
        "REFRESH_TOKEN_TTL",
        "OTP_TTL",
        "SMTP_TIMEOUT",
        "DB_POOL_TIMEOUT",
        "DB_STATEMENT_TIMEOUT",
    ],
)
def test_a_zero_lifetime_or_timeout_is_refused(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"IDENTITY_{variable}: a duration must be positive"):
        load(env, **{variable: "0"})


# --- every variable parsed -----------------------------------------------------

DURATIONS = [
    "ACCESS_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "OTP_TTL",
    "REFRESH_REUSE_GRACE",
    "CLOCK_SKEW",
    "SMTP_TIMEOUT",
    "DB_POOL_TIMEOUT",
    "DB_STATEMENT_TIMEOUT",
]


@pytest.mark.parametrize("variable", DURATIONS)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900", 900),
        ("15m", 900),
        ("30d", 30 * 86400),
        ("10s", 10),
        ("2h", 7200),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (" 15 m ", 900),
    ],
)
def test_durations(env: dict[str, str], variable: str, text: str, seconds: float) -> None:
    settings = load(env, **{variable: text})

    assert value_of(settings, variable) == pytest.approx(seconds)


@given(
    amount=st.integers(min_value=1, max_value=10**6),
    unit=st.sampled_from([("", 1), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]),
)
def test_any_positive_amount_of_any_unit_is_a_duration(amount: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit

    assert parse_duration(f"{amount}{suffix}") == amount * factor


@pytest.mark.parametrize(
    ("text", "milliseconds"), [("500", 500), ("1500", 1500), ("2s", 2000), ("250ms", 250)]
)
def test_slow_request_threshold_is_in_milliseconds(
    env: dict[str, str], text: str, milliseconds: float
) -> None:
    assert load(env, SLOW_REQUEST_MS=text).slow_request_ms == pytest.approx(milliseconds)


@pytest.mark.parametrize(
    ("variable", "text", "value"),
    [
        ("PORT", "8443", 8443),
        ("PORT", " 1 ", 1),
        ("PORT", "65535", 65535),
        ("SMTP_PORT", "465", 465),
        ("OTP_MAX_ATTEMPTS", "3", 3),
        ("BCRYPT_ROUNDS", "4", 4),
        ("BCRYPT_ROUNDS", "14", 14),
        ("HASHER_THREADS", "4", 4),
        ("DB_POOL_SIZE", "20", 20),
    ],
)
def test_whole_numbers(env: dict[str, str], variable: str, text: str, value: int) -> None:
    assert value_of(load(env, **{variable: text}), variable) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        (" false ", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans(env: dict[str, str], text: str, value: bool) -> None:
    assert load(env, HSTS=text).hsts is value


@pytest.mark.parametrize("variable", ["CORS_ORIGINS", "OAUTH_REDIRECT_ALLOWLIST"])
def test_comma_lists_are_trimmed_and_skip_empty_items(env: dict[str, str], variable: str) -> None:
    settings = load(env, **{variable: " https://a.example,https://b.example:8443 ,, "})

    assert value_of(settings, variable) == ("https://a.example", "https://b.example:8443")


def test_trusted_proxies_are_addresses_and_networks(env: dict[str, str]) -> None:
    settings = load(
        env, TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.7 ,::1, 2001:db8::/32, 172.16.5.4/12"
    )

    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("172.16.0.0/12"),
    )


@pytest.mark.parametrize(
    ("text", "value"), [("none", "none"), ("starttls", "starttls"), ("tls", "tls"), ("TLS", "tls")]
)
def test_smtp_tls_modes(env: dict[str, str], text: str, value: str) -> None:
    assert load(env, SMTP_TLS=text).smtp_tls == value


@pytest.mark.parametrize(("text", "value"), [("json", "json"), ("text", "text"), ("Text", "text")])
def test_log_formats(env: dict[str, str], text: str, value: str) -> None:
    assert load(env, LOG_FORMAT=text).log_format == value


RATE_LIMITS = [
    "RATE_LIMIT_GLOBAL",
    "RATE_LIMIT_LOGIN",
    "RATE_LIMIT_OTP_REQUEST",
    "RATE_LIMIT_OTP_VERIFY",
]


@pytest.mark.parametrize("variable", RATE_LIMITS)
@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("100/minute", RateLimit(100, 60)),
        ("5/min", RateLimit(5, 60)),
        ("10/15m", RateLimit(10, 900)),
        ("5/hour", RateLimit(5, 3600)),
        ("2/day", RateLimit(2, 86400)),
        ("20/s", RateLimit(20, 1)),
    ],
)
def test_rate_limits(env: dict[str, str], variable: str, text: str, limit: RateLimit) -> None:
    assert value_of(load(env, **{variable: text}), variable) == limit


def test_text_and_url_variables(env: dict[str, str]) -> None:
    settings = load(
        env,
        HOST="0.0.0.0",
        ISSUER=" https://id.example ",
        AUDIENCE="my-api",
        SMTP_HOST="smtp.example",
        SMTP_USERNAME="mailer",
        EMAIL_FROM="Identity <id@example.com>",
        GOOGLE_CLIENT_ID="client-123.apps.googleusercontent.com",
        GOOGLE_DISCOVERY_URL="http://127.0.0.1:9999/.well-known/openid-configuration",
        GOOGLE_REDIRECT_URI="https://id.example/auth/google/callback",
        LOG_LEVEL="debug",
    )

    assert settings.host == "0.0.0.0"
    assert settings.issuer == "https://id.example"
    assert settings.audience == "my-api"
    assert settings.smtp_host == "smtp.example"
    assert settings.smtp_username == "mailer"
    assert settings.policy.email_from == "Identity <id@example.com>"
    assert settings.policy.google_client_id == "client-123.apps.googleusercontent.com"
    assert settings.google_discovery_url == "http://127.0.0.1:9999/.well-known/openid-configuration"
    assert settings.google_redirect_uri == "https://id.example/auth/google/callback"
    assert settings.log_level == "DEBUG"


def test_secrets_are_parsed_into_secret_values(env: dict[str, str]) -> None:
    settings = load(
        env,
        SMTP_PASSWORD="smtp-pa55",
        GOOGLE_CLIENT_SECRET="g-s3cret",
        REDIS_URL="rediss://:r3dis@cache.internal:6380/1",
    )

    assert settings.secret_key == Secret(SECRET_KEY)
    assert settings.smtp_password == Secret("smtp-pa55")
    # The Google client is a rule a tenant may override: a plain value the policy keeps
    # out of its repr.
    assert settings.policy.google_client_secret == "g-s3cret"
    assert settings.redis_url == Secret("rediss://:r3dis@cache.internal:6380/1")


def test_a_secret_key_is_stripped_of_surrounding_whitespace(env: dict[str, str]) -> None:
    assert load(env, SECRET_KEY=f"  {SECRET_KEY}\n").secret_key.value == SECRET_KEY


def test_a_postgres_database_with_a_secret_key(env: dict[str, str]) -> None:
    settings = load(env, DATABASE_URL=POSTGRES_URL)

    assert settings.database_url == POSTGRES_URL
    assert not settings.is_embedded_database


# --- every kind of bad value ------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("PORT", "http"),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "-1"),
        ("PORT", "80.5"),
        ("SMTP_PORT", "smtp"),
        ("SMTP_PORT", "70000"),
        ("OTP_MAX_ATTEMPTS", "0"),
        ("BCRYPT_ROUNDS", "3"),
        ("BCRYPT_ROUNDS", "32"),
        ("BCRYPT_ROUNDS", "twelve"),
        ("DB_POOL_SIZE", "0"),
        *[(name, bad) for name in DURATIONS for bad in ["15x", "-5", "m", "15 minutes"]],
        ("SLOW_REQUEST_MS", "slow"),
        ("SLOW_REQUEST_MS", "0"),
        ("HSTS", "maybe"),
        ("HSTS", "2"),
        ("SMTP_TLS", "ssl"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        *[
            (name, bad)
            for name in RATE_LIMITS
            for bad in ["100", "0/minute", "5/fortnight", "many", "5/0m", "-1/minute"]
        ],
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "localhost"),
        ("TRUSTED_PROXIES", "10.0.0.1, proxy.internal"),
        ("DATABASE_URL", "mysql+aiomysql://u@h/db"),
        ("DATABASE_URL", "postgresql://u@h/db"),
        ("DATABASE_URL", "sqlite:///identity.db"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://cache.internal:6379"),
        ("REDIS_URL", "cache.internal:6379"),
        ("GOOGLE_DISCOVERY_URL", "ftp://accounts.example/config"),
        ("GOOGLE_REDIRECT_URI", "/auth/google/callback"),
        ("SECRET_KEY", "too-short"),
        ("SECRET_KEY", " " * 40),
    ],
)
def test_a_bad_value_is_rejected_naming_the_variable(
    env: dict[str, str], variable: str, text: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(env, **{variable: text})

    message = str(caught.value)
    assert message.startswith(f"IDENTITY_{variable}: ")
    assert len(message) > len(f"IDENTITY_{variable}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "text", "hidden"),
    [
        ("SECRET_KEY", "sh0rt-secret", "sh0rt-secret"),
        ("REDIS_URL", "http://:r3dis-pass@cache.internal", "r3dis-pass"),
        ("DATABASE_URL", "mysql+aiomysql://u:db-pa55@h/db", "db-pa55"),
    ],
)
def test_a_rejected_secret_is_not_repeated_in_the_message(
    env: dict[str, str], variable: str, text: str, hidden: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(env, **{variable: text})

    assert hidden not in str(caught.value)


def test_postgres_without_a_secret_key_is_refused_naming_the_secret_key() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"IDENTITY_DATABASE_URL": POSTGRES_URL})

    message = str(caught.value)
    assert message.startswith("IDENTITY_SECRET_KEY: ")
    assert "IDENTITY_DATABASE_URL" in message


def test_postgres_with_an_empty_secret_key_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^IDENTITY_SECRET_KEY: "):
        load_settings({"IDENTITY_DATABASE_URL": POSTGRES_URL, "IDENTITY_SECRET_KEY": ""})


# --- secrets out of sight --------------------------------------------------------


def test_repr_and_str_show_no_secret(env: dict[str, str]) -> None:
    settings = load(
        env,
        DATABASE_URL=POSTGRES_URL,
        SMTP_PASSWORD="smtp-pa55",
        GOOGLE_CLIENT_SECRET="g-s3cret",
        REDIS_URL="redis://:r3dis-pass@cache.internal:6379/0",
    )

    for shown in (repr(settings), str(settings)):
        for secret in (SECRET_KEY, "smtp-pa55", "g-s3cret", "r3dis-pass", "db-pa55word"):
            assert secret not in shown
    # Still useful for an operator: where the database is, not its password.
    assert "db.internal" in repr(settings)


def test_a_secret_hides_its_value_but_keeps_it() -> None:
    secret = Secret("hunter2-hunter2")

    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.value == "hunter2-hunter2"
    assert secret
    assert not Secret("")


# --- the embedded default keeps a generated secret beside its database ------------


def test_sqlite_without_a_secret_key_generates_one_into_a_private_file(sqlite_url: str) -> None:
    settings = load_settings({"IDENTITY_DATABASE_URL": sqlite_url})

    path = secret_file(sqlite_url)
    assert path.read_text().strip() == settings.secret_key.value
    assert len(settings.secret_key.value) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.db.secret"]


def test_the_generated_secret_is_kept_across_loads(sqlite_url: str) -> None:
    first = load_settings({"IDENTITY_DATABASE_URL": sqlite_url})
    second = load_settings({"IDENTITY_DATABASE_URL": sqlite_url})

    assert second.secret_key == first.secret_key


def test_each_database_file_gets_its_own_secret(tmp_path: Path) -> None:
    one = load_settings({"IDENTITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/one.db"})
    two = load_settings({"IDENTITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/two.db"})

    assert one.secret_key != two.secret_key


def test_an_explicit_secret_key_writes_no_file(env: dict[str, str], sqlite_url: str) -> None:
    load_settings(env)

    assert not secret_file(sqlite_url).exists()


def test_a_damaged_secret_file_stops_start_up(sqlite_url: str) -> None:
    secret_file(sqlite_url).write_text("\n")

    with pytest.raises(SettingsError, match=r"^IDENTITY_SECRET_KEY: .*identity\.db\.secret"):
        load_settings({"IDENTITY_DATABASE_URL": sqlite_url})


def test_an_in_memory_database_gets_a_secret_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings({"IDENTITY_DATABASE_URL": "sqlite+aiosqlite://"})

    assert len(settings.secret_key.value) >= 32
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("round_", range(5))
def test_processes_starting_together_agree_on_the_generated_secret(
    tmp_path: Path, round_: int
) -> None:
    # Without an atomic publish, a loser of the race read the winner's empty file.
    url = f"sqlite+aiosqlite:///{tmp_path}/identity.db"
    workers = 16
    barrier = threading.Barrier(workers)

    def start(_: int) -> str:
        barrier.wait()
        return load_settings({"IDENTITY_DATABASE_URL": url}).secret_key.value

    with ThreadPoolExecutor(max_workers=workers) as pool:
        keys = list(pool.map(start, range(workers)))

    assert len(set(keys)) == 1
    assert secret_file(url).read_text().strip() == keys[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.db.secret"]


@pytest.mark.parametrize(("text", "algorithm"), [("EdDSA", "EdDSA"), ("rs256", "RS256")])
def test_the_signing_algorithm_of_new_keys(env: dict[str, str], text: str, algorithm: str) -> None:
    assert load(env, SIGNING_ALGORITHM=text).signing_algorithm == algorithm
    assert load_settings(env).signing_algorithm == "EdDSA"


def test_an_unknown_signing_algorithm_stops_start_up(env: dict[str, str]) -> None:
    with pytest.raises(
        SettingsError, match=r"^IDENTITY_SIGNING_ALGORITHM: expected EdDSA or RS256"
    ):
        load(env, SIGNING_ALGORITHM="HS256")


@pytest.mark.parametrize("entry", ["app.example/callback", "javascript:alert(1)", "//evil.example"])
def test_a_redirect_allowlist_entry_that_can_never_match_stops_start_up(
    env: dict[str, str], entry: str
) -> None:
    with pytest.raises(SettingsError, match=r"^IDENTITY_OAUTH_REDIRECT_ALLOWLIST: "):
        load(env, OAUTH_REDIRECT_ALLOWLIST=f"https://app.example/cb, {entry}")


# --- identity providers -----------------------------------------------------------

OIDC = {
    "OIDC_PROVIDERS": "keycloak, azure",
    "OIDC_KEYCLOAK_CLIENT_ID": "kc-client",
    "OIDC_KEYCLOAK_CLIENT_SECRET": "kc-s3cret",
    "OIDC_KEYCLOAK_DISCOVERY_URL": "https://kc.example/realms/a/.well-known/openid-configuration",
    "OIDC_AZURE_CLIENT_ID": "az-client",
    "OIDC_AZURE_CLIENT_SECRET": "az-s3cret",
    "OIDC_AZURE_DISCOVERY_URL": "https://login.example/v2.0/.well-known/openid-configuration",
    "OIDC_AZURE_SCOPES": "openid  email",
    "OIDC_AZURE_REDIRECT_URI": "https://id.example/auth/oidc/azure/callback",
}


def test_named_oidc_providers_are_read_with_their_own_variables(env: dict[str, str]) -> None:
    settings = load(env, **OIDC)

    keycloak, azure = settings.oidc_providers
    assert (keycloak.name, keycloak.client_id, keycloak.client_secret) == (
        "keycloak",
        "kc-client",
        Secret("kc-s3cret"),
    )
    assert keycloak.scopes == "openid email profile" and keycloak.redirect_uri is None
    assert azure.scopes == "openid email"
    assert azure.redirect_uri == "https://id.example/auth/oidc/azure/callback"
    assert "kc-s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("OIDC_KEYCLOAK_CLIENT_ID", "IDENTITY_OIDC_KEYCLOAK_CLIENT_ID"),
        ("OIDC_KEYCLOAK_CLIENT_SECRET", "IDENTITY_OIDC_KEYCLOAK_CLIENT_SECRET"),
        ("OIDC_AZURE_DISCOVERY_URL", "IDENTITY_OIDC_AZURE_DISCOVERY_URL"),
    ],
)
def test_a_named_provider_without_its_client_or_discovery_url_stops_start_up(
    env: dict[str, str], missing: str, variable: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load(env, **{**OIDC, missing: ""})

    assert str(error.value).startswith(f"{variable}: required")
    assert "IDENTITY_OIDC_PROVIDERS" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("providers", "extra", "message"),
    [
        ("Key-Cloak", {}, "IDENTITY_OIDC_PROVIDERS: 'Key-Cloak' is not a provider name"),
        ("google", {}, "IDENTITY_OIDC_PROVIDERS: 'google' has settings of its own"),
        ("keycloak,keycloak", {}, "IDENTITY_OIDC_PROVIDERS: 'keycloak' is named twice"),
        ("keycloak", {"OIDC_KEYCLOAK_SCOPES": "email profile"}, "IDENTITY_OIDC_KEYCLOAK_SCOPES"),
        ("keycloak", {"OIDC_KEYCLOAK_DISCOVERY_URL": "kc.example"}, "_DISCOVERY_URL: expected"),
    ],
)
def test_a_bad_provider_list_or_value_is_named(
    env: dict[str, str], providers: str, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env, **{**OIDC, "OIDC_PROVIDERS": providers, **extra})


def test_github_settings_and_their_defaults(env: dict[str, str]) -> None:
    assert load(env).github_base_url == "https://github.com"
    assert load(env).github_api_url == "https://api.github.com"

    settings = load(
        env,
        GITHUB_CLIENT_ID="Iv1.abc",
        GITHUB_CLIENT_SECRET="gh-s3cret",
        GITHUB_BASE_URL="http://127.0.0.1:9999",
        GITHUB_API_URL="http://127.0.0.1:9998",
        PROVIDER_TIMEOUT="2s",
    )
    assert (settings.github_client_id, settings.github_client_secret) == (
        "Iv1.abc",
        Secret("gh-s3cret"),
    )
    assert settings.github_base_url == "http://127.0.0.1:9999"
    assert settings.provider_timeout == 2.0


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"GITHUB_CLIENT_ID": "Iv1.abc"}, "IDENTITY_GITHUB_CLIENT_SECRET: required"),
        ({"GITHUB_CLIENT_SECRET": "s"}, "IDENTITY_GITHUB_CLIENT_ID: required"),
    ],
)
def test_half_a_github_client_stops_start_up(
    env: dict[str, str], given: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load(env, **given)


# --- each setting declared once --------------------------------------------------


def test_every_field_but_the_groups_is_read_from_its_variable() -> None:
    from identity.entrypoints.settings import PARSER

    unread = {f.name for f in attrs.fields(Settings) if PARSER not in f.metadata}
    assert unread == {"issuer_is_default", "policy", "oidc_providers"}


def test_each_overridable_rule_is_a_variable_and_a_tenant_setting_of_one_name(
    env: dict[str, str],
) -> None:
    from identity.application.policy import ENV_PARSER, TENANT_SETTINGS, Policy
    from identity.entrypoints.settings import setting_names

    rules = [f.name for f in attrs.fields(Policy) if ENV_PARSER in f.metadata]
    assert rules and set(rules) == set(TENANT_SETTINGS)
    assert {f"IDENTITY_{rule.upper()}" for rule in rules} <= set(setting_names())
    # The variable and the tenant setting give the same value of the same type.
    settings = load(env, OTP_TTL="120", OTP_MAX_ATTEMPTS="7", EMAIL_FROM="a@b.test")
    assert settings.policy.otp_ttl == TENANT_SETTINGS["otp_ttl"]("120")
    assert settings.policy.otp_max_attempts == TENANT_SETTINGS["otp_max_attempts"]("7")
    assert settings.policy.email_from == TENANT_SETTINGS["email_from"]("a@b.test")


def test_an_unset_variable_gives_the_declared_default(env: dict[str, str]) -> None:
    from identity.application.policy import Policy

    settings = load(env)
    assert attrs.evolve(settings, secret_key=Secret(SECRET_KEY)) == settings
    assert settings.policy == Policy()
