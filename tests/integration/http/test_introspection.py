"""POST /auth/introspect (RFC 7662) on real Postgres: what is active, and what is not."""

from __future__ import annotations

from typing import Any

import pyotp

from identity.domain.emails import Email
from tests.integration.http.conftest import PASSWORD, Api, problem_of

ACTIVE_MEMBERS = {"active", "sub", "tid", "sid", "exp", "iat", "aal", "amr", "email", "token_type"}


async def introspect(api: Api, key: str, token: str, *, form: bool = True) -> dict[str, Any]:
    if form:
        response = await api.client.post(
            "/auth/introspect", data={"token": token}, headers={"Authorization": f"Bearer {key}"}
        )
    else:
        response = await api.post("/auth/introspect", {"token": token}, token=key)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return dict(await response.json())


async def test_a_live_access_token_is_active_with_its_claims(api: Api) -> None:
    key = await api.api_key("tokens:introspect")
    tokens = await api.register_verified("ada-introspect@example.com")
    claims = api.container.token_codec().decode_access(tokens["access_token"])

    for form in (True, False):
        answer = await introspect(api, key, tokens["access_token"], form=form)

        assert set(answer) == ACTIVE_MEMBERS
        assert answer["active"] is True
        assert answer["sub"] == tokens["user"]["id"] == str(claims.subject)
        assert answer["sid"] == str(claims.session_id)
        assert answer["tid"] == str(claims.tenant_id)
        assert answer["exp"] == int(claims.expires_at.timestamp())
        assert answer["iat"] == int(claims.issued_at.timestamp())
        assert answer["email"] == "ada-introspect@example.com"
        assert answer["token_type"] == "access"
        # Verified by an emailed code, no second factor.
        assert answer["aal"] == claims.aal == "aal1"
        assert answer["amr"] == list(claims.amr) == ["otp"]


async def test_refresh_tokens_junk_and_ended_sessions_are_inactive(api: Api) -> None:
    key = await api.api_key("tokens:introspect")
    tokens = await api.register_verified("bo-introspect@example.com")

    for token in (tokens["refresh_token"], "junk", "a.b.c", tokens["access_token"] + "x"):
        assert await introspect(api, key, token) == {"active": False}

    logout = await api.post("/auth/logout", {"refresh_token": tokens["refresh_token"]})
    assert logout.status == 200
    assert await introspect(api, key, tokens["access_token"]) == {"active": False}


async def test_a_disabled_account_is_inactive(api: Api) -> None:
    key = await api.api_key("tokens:introspect")
    tokens = await api.register_verified("cy-introspect@example.com")
    assert (await introspect(api, key, tokens["access_token"]))["active"] is True

    await api.container.user_admin().set_active(
        "default", Email("cy-introspect@example.com"), False
    )

    assert await introspect(api, key, tokens["access_token"]) == {"active": False}


async def test_a_token_of_another_tenant_is_inactive_for_this_tenants_key(api: Api) -> None:
    await api.container.tenant_admin().create("acme", "Acme")
    default_key = await api.api_key("tokens:introspect")
    acme_key = await api.api_key("tokens:introspect", tenant="acme")
    response = await api.post(
        "/auth/register",
        {"email": "di@example.com", "password": "correct horse battery staple"},
        headers={"X-Tenant": "acme"},
    )
    assert response.status == 202
    code = await api.next_code("di@example.com")
    verified = await api.post(
        "/auth/verify-otp",
        {"email": "di@example.com", "otp_code": code, "purpose": "verification"},
        headers={"X-Tenant": "acme"},
    )
    acme_token = (await verified.json())["access_token"]

    assert await introspect(api, default_key, acme_token) == {"active": False}
    assert (await introspect(api, acme_key, acme_token))["active"] is True


async def test_callers_without_a_key_with_the_scope_are_refused(api: Api) -> None:
    tokens = await api.register_verified("ed-introspect@example.com")
    body = {"token": tokens["access_token"]}

    await problem_of(await api.post("/auth/introspect", body), 401, "invalid_api_key")
    await problem_of(
        await api.post("/auth/introspect", body, token=tokens["access_token"]),
        401,
        "invalid_api_key",
    )
    reader = await api.api_key("users:read")
    await problem_of(
        await api.post("/auth/introspect", body, token=reader), 403, "insufficient_scope"
    )


async def test_a_request_without_a_token_is_a_validation_error(api: Api) -> None:
    key = await api.api_key("tokens:introspect")

    problem = await problem_of(
        await api.post("/auth/introspect", {}, token=key), 422, ("validation_error")
    )
    assert problem["errors"][0]["field"] == "token"
    await problem_of(
        await api.post("/auth/introspect", {"token": 7}, token=key), 422, "validation_error"
    )


async def test_discovery_names_the_introspection_endpoint(api: Api) -> None:
    document = await (await api.get("/.well-known/openid-configuration")).json()

    # The authorization server's endpoint (section 17), which answers an API key with
    # tokens:introspect for the JSON API's access tokens as /auth/introspect does.
    endpoint = document["introspection_endpoint"]
    assert endpoint == api.settings.issuer.rstrip("/") + "/oauth2/introspect"
    key = await api.api_key("tokens:introspect")
    tokens = await api.register_verified("discovered-introspect@example.com")
    answer = await api.post(
        "/oauth2/introspect",
        data={"token": tokens["access_token"]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["active"] is True and body["sid"] and body["token_type"] == "access"


async def test_an_aal2_session_is_introspected_as_aal2(api: Api) -> None:
    key = await api.api_key("tokens:introspect")
    first = await api.register_verified("fa-introspect@example.com")
    enrolled = await (await api.post("/auth/mfa/totp/enroll", token=first["access_token"])).json()
    confirm = await api.post(
        "/auth/mfa/totp/confirm",
        {"code": pyotp.TOTP(enrolled["secret"]).now()},
        token=first["access_token"],
    )
    recovery_codes = (await confirm.json())["recovery_codes"]
    challenge = await (
        await api.post("/auth/login", {"email": "fa-introspect@example.com", "password": PASSWORD})
    ).json()
    second = await api.post(
        "/auth/mfa/verify",
        {"mfa_token": challenge["mfa_token"], "recovery_code": recovery_codes[0]},
    )
    tokens = await second.json()

    answer = await introspect(api, key, tokens["access_token"])

    assert answer["active"] is True
    assert answer["aal"] == "aal2"
    assert answer["amr"][0] == "pwd" and len(answer["amr"]) == 2
