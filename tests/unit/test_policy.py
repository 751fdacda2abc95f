import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from identity.application.policy import TENANT_SETTINGS, parse_tenant_setting, policy_for
from identity.domain.identities import OAuthClient
from identity.domain.ratelimits import RateLimit
from identity.domain.tenants import Tenant
from tests.fakes import default_policy


def _tenant(**settings: Any) -> Tenant:
    return Tenant(
        id=uuid.uuid4(),
        slug="acme",
        name="Acme",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        settings=settings,
    )


def test_a_tenant_without_settings_runs_under_the_deployment_policy() -> None:
    base = default_policy()
    assert policy_for(base, _tenant()) == base


def test_stored_overrides_replace_only_their_own_fields() -> None:
    base = default_policy()
    policy = policy_for(
        base,
        _tenant(
            otp_ttl=300,
            otp_max_attempts="3",
            refresh_reuse_grace=2.5,
            email_from="no-reply@acme.test",
            rate_limit_login="2/minute",
            oauth_redirect_allowlist="https://a.test/cb, https://b.test/cb",
            google_client_id="acme-client",
        ),
    )
    assert policy.otp_ttl == timedelta(seconds=300)
    assert policy.otp_ttl_minutes == 5
    assert policy.otp_max_attempts == 3
    assert policy.refresh_reuse_grace == timedelta(seconds=2.5)
    assert policy.email_from == "no-reply@acme.test"
    assert policy.rate_limit_login == RateLimit(2, 60.0)
    assert policy.oauth_redirect_allowlist == ("https://a.test/cb", "https://b.test/cb")
    assert policy.google_client_id == "acme-client"
    # untouched
    assert policy.access_token_ttl == base.access_token_ttl
    assert policy.rate_limit_otp_request == base.rate_limit_otp_request
    assert policy.google_client_secret is None


def test_a_bad_stored_value_falls_back_to_the_default_and_unknown_keys_are_ignored() -> None:
    base = default_policy()
    policy = policy_for(
        base, _tenant(otp_ttl="soon", otp_max_attempts=0, colour="blue", email_from="ok@a.test")
    )
    assert policy.otp_ttl == base.otp_ttl
    assert policy.otp_max_attempts == base.otp_max_attempts
    assert policy.email_from == "ok@a.test"


@pytest.mark.parametrize(
    ("key", "raw", "parsed"),
    [
        ("access_token_ttl", "900", timedelta(minutes=15)),
        ("refresh_token_ttl", 86400, timedelta(days=1)),
        ("otp_max_attempts", "7", 7),
        ("refresh_reuse_grace", "0", timedelta(0)),
        ("email_from", "  team@acme.test ", "team@acme.test"),
        ("rate_limit_otp_verify", "10/15m", RateLimit(10, 900.0)),
        (
            "oauth_redirect_allowlist",
            ["https://a.test", " ", "https://b.test "],
            (
                "https://a.test",
                "https://b.test",
            ),
        ),
        ("oauth_redirect_allowlist", "", ()),
    ],
)
def test_parse_tenant_setting_accepts_good_values(key: str, raw: object, parsed: object) -> None:
    assert parse_tenant_setting(key, raw) == parsed


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("otp_ttl", "0"),
        ("otp_ttl", "-5"),
        ("refresh_reuse_grace", "-1"),
        ("otp_ttl", "ten"),
        ("otp_max_attempts", "0"),
        ("otp_max_attempts", "many"),
        ("email_from", "   "),
        ("rate_limit_login", "lots"),
        ("rate_limit_login", "0/minute"),
        ("google_client_id", ""),
        ("access_token_ttl", None),
    ],
)
def test_parse_tenant_setting_names_the_setting_in_its_error(key: str, raw: object) -> None:
    with pytest.raises(ValueError, match=f"^{key}: "):
        parse_tenant_setting(key, raw)


def test_parse_tenant_setting_refuses_an_unknown_key_and_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown setting 'colour'") as error:
        parse_tenant_setting("colour", "blue")
    for known in TENANT_SETTINGS:
        assert known in str(error.value)


def test_the_secret_is_kept_out_of_repr() -> None:
    policy = policy_for(default_policy(), _tenant(google_client_secret="s3cr3t-value"))
    assert policy.google_client_secret == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(policy)


def test_a_tenant_redirect_allowlist_must_hold_url_prefixes() -> None:
    assert parse_tenant_setting("oauth_redirect_allowlist", "https://a.example/cb") == (
        "https://a.example/cb",
    )
    with pytest.raises(ValueError, match="oauth_redirect_allowlist"):
        parse_tenant_setting("oauth_redirect_allowlist", "https://a.example, not a url")


def test_a_tenant_overrides_another_providers_client_half_by_half() -> None:
    base = default_policy(provider_clients={"github": ("deploy-id", "deploy-secret")})

    own_id = policy_for(base, _tenant(github_client_id="acme-id"))
    own_pair = policy_for(
        base, _tenant(oidc_corp_client_id="corp-id", oidc_corp_client_secret="corp-secret")
    )

    assert own_id.client_for("github") == OAuthClient("acme-id", "deploy-secret")
    assert own_pair.client_for("oidc_corp") == OAuthClient("corp-id", "corp-secret")
    assert own_pair.client_for("github") == OAuthClient("deploy-id", "deploy-secret")
    assert base.client_for("oidc_corp") is None
    assert "corp-secret" not in repr(own_pair)


@pytest.mark.parametrize(
    "key", ["github_client_id", "oidc_keycloak_client_secret", "google_client_secret"]
)
def test_provider_client_settings_are_known(key: str) -> None:
    assert parse_tenant_setting(key, " value ") == "value"


@pytest.mark.parametrize("key", ["oidc_Key_client_id", "gitlab_client_id", "oidc__client_id"])
def test_a_provider_setting_of_no_possible_provider_is_unknown(key: str) -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        parse_tenant_setting(key, "value")
