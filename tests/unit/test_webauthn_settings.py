"""The relying party's settings: the three variables, their defaults, tenant overrides."""

from __future__ import annotations

import uuid

import pytest

from identity.application.passkeys import relying_party
from identity.application.policy import parse_tenant_setting, policy_for
from identity.domain.tenants import Tenant
from identity.entrypoints.container import policy_from
from identity.entrypoints.settings import Settings, SettingsError, load_settings
from tests.fakes import manual_clock

BASE = {"IDENTITY_SECRET_KEY": "k3y-" + "x" * 40, "IDENTITY_ISSUER": "https://id.example.com"}


def settings(**variables: str) -> Settings:
    return load_settings({**BASE, **{f"IDENTITY_WEBAUTHN_{k}": v for k, v in variables.items()}})


def tenant(**overrides: object) -> Tenant:
    return Tenant(
        id=uuid.uuid4(),
        slug="acme",
        name="Acme",
        created_at=manual_clock().now(),
        settings=dict(overrides),
    )


def test_defaults_are_the_issuers_host_the_tenants_name_and_https_on_the_rp_id() -> None:
    loaded = load_settings(BASE)
    rp = relying_party(policy_from(loaded), tenant())
    assert (rp.id, rp.name, rp.origins) == ("id.example.com", "Acme", ("https://id.example.com",))


def test_set_values_are_used() -> None:
    loaded = load_settings(
        {
            **BASE,
            "IDENTITY_WEBAUTHN_RP_ID": "example.com",
            "IDENTITY_WEBAUTHN_RP_NAME": "Example",
            "IDENTITY_WEBAUTHN_ORIGINS": "https://example.com, https://app.example.com:8443",
        }
    )
    rp = relying_party(policy_from(loaded), tenant())
    assert rp.id == "example.com" and rp.name == "Example"
    assert rp.origins == ("https://example.com", "https://app.example.com:8443")


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RP_ID": "Not A Host"}, "IDENTITY_WEBAUTHN_RP_ID"),
        ({"RP_ID": "example.com", "ORIGINS": "https://evil.test"}, "IDENTITY_WEBAUTHN_ORIGINS"),
        ({"RP_ID": "example.com", "ORIGINS": "http://example.com"}, "IDENTITY_WEBAUTHN_ORIGINS"),
        ({"ORIGINS": "https://id.example.com/path"}, "IDENTITY_WEBAUTHN_ORIGINS"),
        ({"ORIGINS": "https://other.example.com"}, "IDENTITY_WEBAUTHN_ORIGINS"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        settings(**variables)


def test_localhost_may_use_http() -> None:
    loaded = settings(RP_ID="localhost", ORIGINS="http://localhost:8000")
    assert relying_party(policy_from(loaded), tenant()).origins == ("http://localhost:8000",)


def test_a_tenant_overrides_each_part() -> None:
    base = policy_from(load_settings(BASE))
    overrides = {
        "webauthn_rp_id": parse_tenant_setting("webauthn_rp_id", "acme.test"),
        "webauthn_rp_name": parse_tenant_setting("webauthn_rp_name", "Acme Inc"),
        "webauthn_origins": parse_tenant_setting("webauthn_origins", "https://login.acme.test"),
    }
    rp = relying_party(policy_for(base, tenant(**overrides)), tenant())
    assert (rp.id, rp.name, rp.origins) == ("acme.test", "Acme Inc", ("https://login.acme.test",))
    # A tenant that moves only its RP ID does not inherit origins of another site.
    moved = relying_party(policy_for(base, tenant(webauthn_rp_id="acme.test")), tenant())
    assert moved.origins == ("https://acme.test",)


@pytest.mark.parametrize(
    ("key", "raw"),
    [("webauthn_rp_id", "ACME"), ("webauthn_origins", "ftp://x.test"), ("webauthn_rp_name", " ")],
)
def test_bad_tenant_values_are_refused_naming_the_setting(key: str, raw: str) -> None:
    with pytest.raises(ValueError, match=key):
        parse_tenant_setting(key, raw)
