"""Passkeys end to end over HTTP on Postgres, with a software authenticator in the test.

The authenticator (``tests/authenticator.py``) makes ES256 and EdDSA keys with
``cryptography`` and builds authenticator data and CBOR itself: the service
only ever sees what a browser would post back.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import jwt
import pyotp
import pytest
from dependency_injector import providers
from sqlalchemy import select

from identity.adapters.clock import ManualClock
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.engine import make_engine
from identity.entrypoints.http.app import build_container
from identity.entrypoints.settings import Settings
from tests.authenticator import SoftwareAuthenticator, b64url
from tests.integration.http.conftest import PASSWORD, Api, MakeApi, problem_of

EMAIL = "ada@example.com"
RP_ID = "id.example.test"
ORIGIN = "https://id.example.test"
RP = {"WEBAUTHN_RP_ID": RP_ID, "WEBAUTHN_ORIGINS": ORIGIN}


def claims(access_token: str) -> dict[str, Any]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(WEBAUTHN_RP_ID=RP_ID, WEBAUTHN_ORIGINS=ORIGIN)


async def register_options(api: Api, token: str) -> dict[str, Any]:
    response = await api.post("/auth/passkeys/register/options", token=token)
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"flow_id", "expires_in", "publicKey"} and body["expires_in"] == 300
    return dict(body)


async def add_passkey(
    api: Api,
    token: str,
    authenticator: SoftwareAuthenticator,
    name: str | None = None,
    **knobs: Any,
) -> dict[str, Any]:
    flow = await register_options(api, token)
    body: dict[str, Any] = {
        "flow_id": flow["flow_id"],
        "credential": authenticator.create(flow["publicKey"], **knobs),
    }
    if name is not None:
        body["name"] = name
    response = await api.post("/auth/passkeys/register/verify", body, token=token)
    created = await response.json(content_type=None)
    assert response.status == 201, created
    return dict(created)


async def login_options(api: Api, email: str | None = None, **headers: str) -> dict[str, Any]:
    response = await api.post(
        "/auth/passkeys/login/options", {"email": email} if email else {}, headers=headers
    )
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def login(
    api: Api, authenticator: SoftwareAuthenticator, email: str | None = None, **knobs: Any
) -> Any:
    flow = await login_options(api, email)
    credential = authenticator.get(flow["publicKey"], **knobs)
    return await api.post(
        "/auth/passkeys/login/verify", {"flow_id": flow["flow_id"], "credential": credential}
    )


async def signed_in(api: Api, email: str = EMAIL, password: str | None = PASSWORD) -> str:
    return str((await api.register_verified(email, password))["access_token"])


async def test_add_a_passkey_then_sign_in_with_it_discoverable_and_email_first(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    flow = await register_options(api, token)
    options = flow["publicKey"]
    assert options["rp"] == {"id": RP_ID, "name": "Default"}
    assert options["user"]["name"] == EMAIL and options["timeout"] == 300000
    assert len(base64.urlsafe_b64decode(options["user"]["id"] + "==")) == 32
    assert {p["alg"] for p in options["pubKeyCredParams"]} >= {-7, -8, -257}
    credential = authenticator.create(options)
    response = await api.post(
        "/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential, "name": "  Laptop  "},
        token=token,
    )
    passkey = await response.json()
    assert response.status == 201, passkey
    assert set(passkey) == {"id", "name", "created_at", "last_used_at", "transports", "backed_up"}
    assert passkey["name"] == "Laptop" and passkey["last_used_at"] is None
    assert passkey["transports"] == ["internal", "hybrid"] and passkey["backed_up"] is True
    notice = await api.next_mail(EMAIL)
    assert "passkey" in str(notice["Subject"]) and "Laptop" in str(notice.get_body())

    discoverable = await login_options(api)
    assert discoverable["publicKey"]["allowCredentials"] == []
    assert discoverable["publicKey"]["userVerification"] == "required"
    assert discoverable["publicKey"]["rpId"] == RP_ID
    response = await api.post(
        "/auth/passkeys/login/verify",
        {
            "flow_id": discoverable["flow_id"],
            "credential": authenticator.get(discoverable["publicKey"]),
        },
    )
    tokens = await response.json()
    assert response.status == 200, tokens
    access = claims(tokens["access_token"])
    assert (access["aal"], access["amr"]) == ("aal2", ["swk", "user"])
    assert tokens["user"]["email"] == EMAIL

    email_first = await login_options(api, EMAIL)
    allowed = email_first["publicKey"]["allowCredentials"]
    assert [item["id"] for item in allowed] == [credential["id"]]
    assert "user" not in email_first["publicKey"] and EMAIL not in str(email_first)
    response = await api.post(
        "/auth/passkeys/login/verify",
        {
            "flow_id": email_first["flow_id"],
            "credential": authenticator.get(email_first["publicKey"]),
        },
    )
    assert response.status == 200, await response.text()

    # The refreshed access token keeps aal2 and the passkey's amr.
    refreshed = await api.post(
        "/auth/refresh-token", {"refresh_token": (await response.json())["refresh_token"]}
    )
    again = claims((await refreshed.json())["access_token"])
    assert (again["aal"], again["amr"]) == ("aal2", ["swk", "user"])
    listed = await (await api.get("/auth/passkeys", token=token)).json()
    assert [item["id"] for item in listed["items"]] == [passkey["id"]]
    assert listed["items"][0]["last_used_at"] is not None


async def test_a_device_bound_eddsa_passkey_is_hwk(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN, algorithm="EdDSA")
    await add_passkey(api, token, authenticator, backup_eligible=False, backed_up=False)

    response = await login(api, authenticator)

    body = await response.json()
    assert response.status == 200, body
    assert claims(body["access_token"])["amr"] == ["hwk", "user"]


@pytest.mark.parametrize(
    "knobs",
    [
        {"origin": "https://evil.test"},
        {"rp_id": "evil.test"},
        {"up": False},
        {"uv": False},
        {"cross_origin": True},
        {"kind": "webauthn.create"},
    ],
    ids=["wrong-origin", "wrong-rp-id-hash", "no-up", "no-uv", "cross-origin", "wrong-type"],
)
async def test_login_checks_answer_400_with_one_detail(api: Api, knobs: dict[str, Any]) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)

    failed = await problem_of(await login(api, authenticator, **knobs), 400, "webauthn_invalid")
    ok_flow = await login_options(api)
    # A refused credential with a wrong signature carries the same detail.
    forged = authenticator.get(ok_flow["publicKey"])
    forged["response"]["signature"] = b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    other = await problem_of(
        await api.post(
            "/auth/passkeys/login/verify", {"flow_id": ok_flow["flow_id"], "credential": forged}
        ),
        400,
        "webauthn_invalid",
    )
    assert failed["detail"] == other["detail"]


@pytest.mark.parametrize(
    "knobs",
    [{"origin": "https://evil.test"}, {"rp_id": "evil.test"}, {"up": False}, {"uv": False}],
    ids=["wrong-origin", "wrong-rp-id-hash", "no-up", "no-uv"],
)
async def test_registration_checks_answer_400(api: Api, knobs: dict[str, Any]) -> None:
    token = await signed_in(api)
    flow = await register_options(api, token)
    credential = SoftwareAuthenticator(ORIGIN).create(flow["publicKey"], **knobs)
    response = await api.post(
        "/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
        token=token,
    )
    await problem_of(response, 400, "webauthn_invalid")
    listed = await (await api.get("/auth/passkeys", token=token)).json()
    assert listed == {"items": []}


async def test_a_replayed_flow_is_refused(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)
    flow = await login_options(api)
    body = {"flow_id": flow["flow_id"], "credential": authenticator.get(flow["publicKey"])}
    assert (await api.post("/auth/passkeys/login/verify", body)).status == 200

    replayed = await api.post("/auth/passkeys/login/verify", body)

    await problem_of(replayed, 400, "webauthn_invalid")
    # A registration flow cannot finish a sign-in, nor the reverse.
    registration = await register_options(api, token)
    wrong_ceremony = {
        "flow_id": registration["flow_id"],
        "credential": authenticator.get(registration["publicKey"] | {"rpId": RP_ID}),
    }
    await problem_of(
        await api.post("/auth/passkeys/login/verify", wrong_ceremony), 400, "webauthn_invalid"
    )


async def test_a_registration_flow_belongs_to_its_user(api: Api) -> None:
    ada = await signed_in(api)
    bob = await signed_in(api, "bob@example.com")
    flow = await register_options(api, ada)
    credential = SoftwareAuthenticator(ORIGIN).create(flow["publicKey"])

    response = await api.post(
        "/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
        token=bob,
    )

    await problem_of(response, 400, "webauthn_invalid")


async def test_a_credential_is_registered_once(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator, credential_id=b"k" * 32)
    flow = await register_options(api, token)
    assert [c["id"] for c in flow["publicKey"]["excludeCredentials"]] == [b64url(b"k" * 32)]
    credential = authenticator.create(flow["publicKey"], credential_id=b"k" * 32)

    response = await api.post(
        "/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
        token=token,
    )

    await problem_of(response, 409, "passkey_exists")


async def test_another_tenants_credential_is_not_found(api: Api) -> None:
    await api.container.tenant_admin().create("other")
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)
    flow = await login_options(api, **{"X-Tenant": "other"})

    response = await api.post(
        "/auth/passkeys/login/verify",
        {"flow_id": flow["flow_id"], "credential": authenticator.get(flow["publicKey"])},
        headers={"X-Tenant": "other"},
    )

    await problem_of(response, 404, "passkey_not_found")
    # And a flow of one tenant cannot be finished in another.
    flow = await login_options(api)
    response = await api.post(
        "/auth/passkeys/login/verify",
        {"flow_id": flow["flow_id"], "credential": authenticator.get(flow["publicKey"])},
        headers={"X-Tenant": "other"},
    )
    await problem_of(response, 400, "webauthn_invalid")


async def test_a_cloned_counter_is_refused_recorded_and_the_passkey_stays(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await add_passkey(api, token, authenticator)
    assert (await login(api, authenticator, sign_count=7)).status == 200

    clone = await login(api, authenticator, sign_count=7)

    await problem_of(clone, 400, "webauthn_invalid")
    reader = await api.api_key("events:read")
    events = await (await api.get("/admin/events", token=reader)).json()
    types = [event["type"] for event in events["items"]]
    assert "passkey.sign_count_regressed" in types
    regressed = next(e for e in events["items"] if e["type"] == "passkey.sign_count_regressed")
    assert regressed["data"]["passkey_id"] == passkey["id"]
    failed = next(e for e in events["items"] if e["type"] == "login.failed")
    assert failed["data"]["method"] == "passkey"
    succeeded = next(
        e
        for e in events["items"]
        if e["type"] == "login.succeeded" and e["data"]["method"] == "passkey"
    )
    assert succeeded["data"]["method"] == "passkey" and succeeded["data"]["aal"] == "aal2"
    assert succeeded["data"]["passkey_id"] == passkey["id"]
    assert "passkey.added" in types
    listed = await (await api.get("/auth/passkeys", token=token)).json()
    assert [item["id"] for item in listed["items"]] == [passkey["id"]]


async def test_a_deleted_passkey_is_not_found(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await add_passkey(api, token, authenticator)
    response = await api.delete(f"/auth/passkeys/{passkey['id']}", token=token)
    assert response.status == 204, await response.text()

    await problem_of(await login(api, authenticator), 404, "passkey_not_found")
    await problem_of(
        await api.delete(f"/auth/passkeys/{passkey['id']}", token=token), 404, "not_found"
    )


async def test_a_disabled_account_is_403_after_a_valid_assertion(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)
    writer = await api.api_key("users:write")
    me = await (await api.me(token)).json()
    response = await api.patch(f"/admin/users/{me['id']}", {"is_active": False}, token=writer)
    assert response.status == 200, await response.text()

    await problem_of(await login(api, authenticator), 403, "account_disabled")
    # An invalid assertion on a disabled account is still just invalid.
    await problem_of(await login(api, authenticator, uv=False), 400, "webauthn_invalid")


async def test_decoys_are_stable_recognised_and_400_not_404(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)
    await signed_in(api, "nopasskey@example.com")

    first = await login_options(api, "ghost@example.com")
    again = await login_options(api, "GHOST@example.com")
    without = await login_options(api, "nopasskey@example.com")
    decoys = first["publicKey"]["allowCredentials"]
    assert 1 <= len(decoys) <= 3
    assert decoys == again["publicKey"]["allowCredentials"]
    real = (await login_options(api, EMAIL))["publicKey"]["allowCredentials"]
    for item in [*decoys, *without["publicKey"]["allowCredentials"]]:
        assert set(item) == set(real[0]) and item["type"] == "public-key"
    assert set(first["publicKey"]) == set((await login_options(api, EMAIL))["publicKey"])

    credential = authenticator.get(first["publicKey"])
    credential["id"] = credential["rawId"] = decoys[0]["id"]
    response = await api.post(
        "/auth/passkeys/login/verify", {"flow_id": first["flow_id"], "credential": credential}
    )
    await problem_of(response, 400, "webauthn_invalid")
    # An id of no one's that is no decoy is the Signal API's 404.
    flow = await login_options(api)
    credential = authenticator.get(flow["publicKey"])
    credential["id"] = credential["rawId"] = b64url(b"n" * 32)
    response = await api.post(
        "/auth/passkeys/login/verify", {"flow_id": flow["flow_id"], "credential": credential}
    )
    await problem_of(response, 404, "passkey_not_found")


async def test_an_email_first_flow_refuses_another_accounts_passkey(api: Api) -> None:
    ada = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, await signed_in(api), ada)
    bob = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, await signed_in(api, "bob@example.com"), bob)

    await problem_of(await login(api, bob, EMAIL), 400, "webauthn_invalid")
    await problem_of(await login(api, ada, "bob@example.com"), 400, "webauthn_invalid")
    await problem_of(await login(api, ada, user_handle=b"x" * 32), 400, "webauthn_invalid")


@pytest.mark.parametrize(
    "credential",
    [
        {"id": "!!!", "rawId": "!!!", "type": "public-key", "response": {}},
        "not an object",
        ["a", "list"],
        {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": 5}},
        {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(b"{not json"),
                "authenticatorData": "%%%",
                "signature": "AA",
            },
        },
        {"id": "A" * 3000, "rawId": "A" * 3000, "type": "public-key", "response": {}},
        {"id": "AAAA", "rawId": "AAAA", "type": "nope", "response": []},
    ],
)
async def test_malformed_credentials_are_4xx_never_500(api: Api, credential: Any) -> None:
    token = await signed_in(api)
    for path, flow in (
        ("/auth/passkeys/login/verify", await login_options(api)),
        ("/auth/passkeys/register/verify", await register_options(api, token)),
    ):
        response = await api.post(
            path, {"flow_id": flow["flow_id"], "credential": credential}, token=token
        )
        assert response.status in (400, 404, 422), await response.text()
        assert response.content_type == "application/problem+json"


async def test_truncated_cbor_and_huge_fields_are_400(api: Api) -> None:
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    flow = await register_options(api, token)
    credential = authenticator.create(flow["publicKey"])
    attestation = base64.urlsafe_b64decode(credential["response"]["attestationObject"] + "==")
    credential["response"]["attestationObject"] = b64url(attestation[: len(attestation) // 2])
    response = await api.post(
        "/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
        token=token,
    )
    await problem_of(response, 400, "webauthn_invalid")
    await add_passkey(api, token, authenticator)
    flow = await login_options(api)
    credential = authenticator.get(flow["publicKey"])
    credential["response"]["authenticatorData"] = credential["response"]["authenticatorData"][:20]
    response = await api.post(
        "/auth/passkeys/login/verify", {"flow_id": flow["flow_id"], "credential": credential}
    )
    await problem_of(response, 400, "webauthn_invalid")
    huge = {"flow_id": "x", "credential": {"id": "A" * 70000}}
    response = await api.post("/auth/passkeys/login/verify", huge)
    assert response.status == 413


async def test_bad_bodies_are_422(api: Api) -> None:
    token = await signed_in(api)
    await problem_of(
        await api.post("/auth/passkeys/login/verify", {"credential": {}}), 422, "validation_error"
    )
    await problem_of(
        await api.post("/auth/passkeys/login/verify", {"flow_id": "x", "credential": "s"}),
        422,
        "validation_error",
    )
    await problem_of(
        await api.post("/auth/passkeys/login/options", {"email": "not-an-email"}),
        422,
        "validation_error",
    )
    passkey = await add_passkey(api, token, SoftwareAuthenticator(ORIGIN))
    for name in ("", "   ", "x" * 65, 42):
        await problem_of(
            await api.patch(f"/auth/passkeys/{passkey['id']}", {"name": name}, token=token),
            422,
            "validation_error",
        )
    renamed = await api.patch(f"/auth/passkeys/{passkey['id']}", {"name": " Phone "}, token=token)
    assert (await renamed.json())["name"] == "Phone"


async def test_the_last_sign_in_method_rule(api: Api) -> None:
    token = await signed_in(api, password=None)  # an emailed-code account
    first = await add_passkey(api, token, SoftwareAuthenticator(ORIGIN))
    second = await add_passkey(api, token, SoftwareAuthenticator(ORIGIN))

    assert (await api.delete(f"/auth/passkeys/{first['id']}", token=token)).status == 204
    await problem_of(
        await api.delete(f"/auth/passkeys/{second['id']}", token=token),
        409,
        "last_sign_in_method",
    )
    # The administrator is not bound by it: the emailed code still signs in.
    me = await (await api.me(token)).json()
    reader = await api.api_key("users:read")
    writer = await api.api_key("users:write")
    user = await (await api.get(f"/admin/users/{me['id']}", token=reader)).json()
    assert user["passkeys"] == 1
    listed = await (await api.get(f"/admin/users/{me['id']}/passkeys", token=reader)).json()
    assert [item["id"] for item in listed["items"]] == [second["id"]]
    response = await api.delete(f"/admin/users/{me['id']}/passkeys/{second['id']}", token=writer)
    assert response.status == 204
    assert (await (await api.get(f"/admin/users/{me['id']}", token=reader)).json())["passkeys"] == 0
    await problem_of(
        await api.delete(f"/admin/users/{me['id']}/passkeys/{second['id']}", token=writer),
        404,
        "not_found",
    )


async def test_someone_elses_passkey_is_not_found(api: Api) -> None:
    passkey = await add_passkey(api, await signed_in(api), SoftwareAuthenticator(ORIGIN))
    bob = await signed_in(api, "bob@example.com")

    await problem_of(
        await api.patch(f"/auth/passkeys/{passkey['id']}", {"name": "mine"}, token=bob),
        404,
        "not_found",
    )
    await problem_of(
        await api.delete(f"/auth/passkeys/{passkey['id']}", token=bob), 404, "not_found"
    )


async def test_export_lists_passkeys_and_erasure_deletes_them(api: Api) -> None:
    token = await signed_in(api)
    passkey = await add_passkey(api, token, SoftwareAuthenticator(ORIGIN), name="Key")
    export = await (await api.get("/auth/me/export", token=token)).json()
    assert export["passkeys"] == [passkey]
    assert "public_key" not in str(export) and "sign_count" not in str(export)

    response = await api.delete("/auth/me", token=token, json={"password": PASSWORD})
    assert response.status == 204, await response.text()

    engine = make_engine(api.settings.database_url)
    try:
        async with engine.connect() as connection:
            left = (await connection.execute(select(t.passkeys.c.id))).all()
            handles = (await connection.execute(select(t.webauthn_user_handles))).all()
    finally:
        await engine.dispose()
    assert left == [] and handles == []


async def test_the_store_holds_no_challenge_nor_flow_id(api: Api) -> None:
    flow = await login_options(api)
    engine = make_engine(api.settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(t.webauthn_flows))).all()
    finally:
        await engine.dispose()
    stored = str(rows)
    assert rows and flow["flow_id"] not in stored
    assert flow["publicKey"]["challenge"] not in stored


@pytest.fixture
def clocked(make_api: MakeApi, settings_for: Callable[..., Settings]) -> Callable[..., Any]:
    async def build() -> tuple[Api, ManualClock]:
        clock = ManualClock()
        container = build_container(settings_for(CLOCK_SKEW="1h", **RP))
        container.clock.override(providers.Object(clock))
        return await make_api(container=container), clock

    return build


async def test_a_flow_lives_five_minutes(clocked: Callable[..., Any]) -> None:
    api, clock = await clocked()
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)
    flow = await login_options(api)
    clock.advance(seconds=301)

    response = await api.post(
        "/auth/passkeys/login/verify",
        {"flow_id": flow["flow_id"], "credential": authenticator.get(flow["publicKey"])},
    )

    await problem_of(response, 400, "webauthn_invalid")


async def test_with_mfa_on_sign_in_is_aal2_and_managing_needs_aal2(
    clocked: Callable[..., Any],
) -> None:
    api, clock = await clocked()
    clock.advance(seconds=(15 - clock.now().timestamp() % 30) % 30)
    token = (await api.register_verified(EMAIL))["access_token"]
    authenticator = SoftwareAuthenticator(ORIGIN)
    passkey = await add_passkey(api, token, authenticator)
    weak = (await api.login(EMAIL))["access_token"]  # opened before MFA: stays aal1
    enrolled = await (await api.post("/auth/mfa/totp/enroll", token=token)).json()
    code = pyotp.TOTP(enrolled["secret"]).at(clock.now())
    confirmed = await api.post("/auth/mfa/totp/confirm", {"code": code}, token=token)
    assert confirmed.status == 200, await confirmed.text()

    await problem_of(
        await api.post("/auth/passkeys/register/options", token=weak), 403, "mfa_required"
    )
    await problem_of(
        await api.delete(f"/auth/passkeys/{passkey['id']}", token=weak), 403, "mfa_required"
    )
    # A password sign-in asks for the second factor; the passkey does not: it is aal2.
    response = await api.post("/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert (await response.json())["mfa_required"] is True
    response = await login(api, authenticator)
    tokens = await response.json()
    assert response.status == 200 and "mfa_required" not in tokens, tokens
    strong = tokens["access_token"]
    assert claims(strong)["aal"] == "aal2"
    await add_passkey(api, strong, SoftwareAuthenticator(ORIGIN))
    response = await api.delete(f"/auth/passkeys/{passkey['id']}", token=strong)
    assert response.status == 204, await response.text()
    # An administrator's MFA reset leaves the passkeys.
    me = await (await api.me(strong)).json()
    writer = await api.api_key("users:write", "users:read")
    response = await api.delete(f"/admin/users/{me['id']}/mfa", token=writer)
    assert response.status == 200, await response.text()
    listed = await (await api.get(f"/admin/users/{me['id']}/passkeys", token=writer)).json()
    assert len(listed["items"]) == 1


async def test_email_first_options_and_verify_count_against_the_login_limit(
    make_api: MakeApi,
) -> None:
    api = await make_api(WEBAUTHN_RP_ID=RP_ID, WEBAUTHN_ORIGINS=ORIGIN, RATE_LIMIT_LOGIN="3/minute")
    token = await signed_in(api)
    authenticator = SoftwareAuthenticator(ORIGIN)
    await add_passkey(api, token, authenticator)

    # Discoverable options name no one: not counted. Each verify counts for the account.
    assert (await login(api, authenticator)).status == 200
    assert (await login(api, authenticator)).status == 200
    await login_options(api, EMAIL)  # the third hit for this address
    response = await api.post("/auth/passkeys/login/options", {"email": EMAIL})
    await problem_of(response, 429, "rate_limited")
    await problem_of(await login(api, authenticator), 429, "rate_limited")
    # Another address has its own count.
    await login_options(api, "someone@example.com")
