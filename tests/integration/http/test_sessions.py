"""Tokens and sessions over HTTP: refresh rotation, logout, bearer checks, session
management, password change, and the published keys."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.http.conftest import PASSWORD, Api, MakeApi, problem_of

NEW_PASSWORD = "a brand new passphrase"
BEARER_CHALLENGE = 'Bearer error="invalid_token"'


async def refresh(api: Api, token: str) -> Any:
    return await api.post("/auth/refresh-token", {"refresh_token": token})


async def refreshed(api: Api, token: str) -> dict[str, Any]:
    response = await refresh(api, token)
    assert response.status == 200, await response.text()
    return dict(await response.json())


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def assert_rejected_bearer(api: Api, token: str | None, *, header: str | None = None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await api.get("/auth/me", token=token, headers=headers)
    await problem_of(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == BEARER_CHALLENGE


# --- refresh -------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(api: Api) -> None:
    first = await api.register_verified("rot@example.com")

    second = await refreshed(api, first["refresh_token"])
    third = await refreshed(api, second["refresh_token"])

    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert second["token_type"] == "bearer"
    assert second["user"]["email"] == "rot@example.com"
    assert claims_of(second["refresh_token"])["sid"] == claims_of(first["refresh_token"])["sid"]
    assert (await api.me(third["access_token"])).status == 200


async def test_a_spent_token_within_the_grace_window_gets_the_same_successor(api: Api) -> None:
    first = await api.register_verified("tabs@example.com")

    second = await refreshed(api, first["refresh_token"])
    again = await refreshed(api, first["refresh_token"])

    assert again["refresh_token"] == second["refresh_token"]
    assert (await api.me(again["access_token"])).status == 200
    # The successor is still the live token of the session.
    await refreshed(api, second["refresh_token"])


async def test_concurrent_refreshes_of_one_token_share_one_successor(api: Api) -> None:
    first = await api.register_verified("race@example.com")

    responses = await asyncio.gather(*(refresh(api, first["refresh_token"]) for _ in range(8)))

    assert [r.status for r in responses] == [200] * 8
    successors = {(await r.json())["refresh_token"] for r in responses}
    assert len(successors) == 1


async def test_a_spent_token_after_the_grace_window_ends_the_session(make_api: MakeApi) -> None:
    api = await make_api(REFRESH_REUSE_GRACE="1s")
    first = await api.register_verified("replay@example.com")
    second = await refreshed(api, first["refresh_token"])

    await asyncio.sleep(1.3)  # the grace window has to pass
    replayed = await refresh(api, first["refresh_token"])

    await problem_of(replayed, 401, "refresh_token_reused")
    # The whole family is revoked: the newest token and its access token too.
    newest = await refresh(api, second["refresh_token"])
    await problem_of(newest, 401, "invalid_token")
    await assert_rejected_bearer(api, second["access_token"])


async def test_refresh_refuses_what_is_not_a_live_refresh_token(api: Api) -> None:
    tokens = await api.register_verified("bad-refresh@example.com")
    header, payload, signature = tokens["refresh_token"].split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"

    for token in (tokens["access_token"], "not.a.jwt", "garbage", tampered):
        response = await refresh(api, token)
        await problem_of(response, 401, "invalid_token")
    missing = await api.post("/auth/refresh-token", {})
    await problem_of(missing, 422, "validation_error")


# --- logout --------------------------------------------------------------------------


async def test_logout_ends_the_session_and_is_idempotent(api: Api) -> None:
    email = "bye@example.com"
    tokens = await api.register_verified(email)
    other = await api.login(email)

    first = await api.post("/auth/logout", {"refresh_token": tokens["refresh_token"]})
    second = await api.post("/auth/logout", {"refresh_token": tokens["refresh_token"]})

    assert first.status == 200 and second.status == 200
    assert set(await first.json()) == {"message"}
    await problem_of(await refresh(api, tokens["refresh_token"]), 401, "invalid_token")
    await assert_rejected_bearer(api, tokens["access_token"])
    # Only that session ended.
    assert (await api.me(other["access_token"])).status == 200
    await refreshed(api, other["refresh_token"])


async def test_logout_of_a_rotated_token_still_ends_the_session(api: Api) -> None:
    tokens = await api.register_verified("bye2@example.com")
    rotated = await refreshed(api, tokens["refresh_token"])

    response = await api.post("/auth/logout", {"refresh_token": tokens["refresh_token"]})

    assert response.status == 200
    await problem_of(await refresh(api, rotated["refresh_token"]), 401, "invalid_token")


async def test_logout_all_ends_every_session_of_the_user(api: Api) -> None:
    email = "all@example.com"
    sessions = [await api.register_verified(email), await api.login(email), await api.login(email)]
    bystander = await api.register_verified("bystander@example.com")

    response = await api.post("/auth/logout-all", token=sessions[1]["access_token"])

    assert response.status == 200
    body = await response.json()
    assert set(body) == {"message", "sessions_revoked"}
    assert body["sessions_revoked"] == 3
    for tokens in sessions:
        await assert_rejected_bearer(api, tokens["access_token"])
        await problem_of(await refresh(api, tokens["refresh_token"]), 401, "invalid_token")
    assert (await api.me(bystander["access_token"])).status == 200
    again = await api.post("/auth/logout-all", token=sessions[1]["access_token"])
    await problem_of(again, 401, "invalid_token")


# --- /auth/me and bearer checks ------------------------------------------------------


async def test_me_refuses_missing_and_malformed_bearers(api: Api) -> None:
    tokens = await api.register_verified("me@example.com")

    await assert_rejected_bearer(api, None)
    await assert_rejected_bearer(api, "not-a-token")
    await assert_rejected_bearer(api, "a.b.c")
    await assert_rejected_bearer(api, None, header=f"Basic {tokens['access_token']}")
    await assert_rejected_bearer(api, None, header="Bearer ")
    await assert_rejected_bearer(api, tokens["refresh_token"])  # the wrong type
    assert (await api.me(tokens["access_token"])).status == 200


async def test_me_refuses_an_expired_access_token(make_api: MakeApi) -> None:
    # exp is whole seconds after a whole-second iat: a 1 s token can be dead at birth.
    api = await make_api(ACCESS_TOKEN_TTL="3s", CLOCK_SKEW="1ms")
    tokens = await api.register_verified("expiring@example.com")
    assert tokens["expires_in"] == 3
    assert (await api.me(tokens["access_token"])).status == 200

    expires_at = claims_of(tokens["access_token"])["exp"]
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)  # until it has expired

    await assert_rejected_bearer(api, tokens["access_token"])
    # The session itself lives on: a refresh gives a working access token.
    renewed = await refreshed(api, tokens["refresh_token"])
    assert (await api.me(renewed["access_token"])).status == 200


async def test_me_refuses_forged_tokens(api: Api) -> None:
    tokens = await api.register_verified("forged@example.com")
    claims = claims_of(tokens["access_token"])
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    jwks = await (await api.get("/.well-known/jwks.json")).json()
    [published] = [key for key in jwks["keys"] if key["kid"] == kid]
    public_x = base64.urlsafe_b64decode(published["x"] + "==")

    forgeries = {
        "another key, same kid": jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
        ),
        "alg none": jwt.encode(claims, "", algorithm="none", headers={"kid": kid}),
        "HS256 keyed with the public key": jwt.encode(
            claims, public_x, algorithm="HS256", headers={"kid": kid}
        ),
        "unknown kid": jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "nope"}
        ),
    }
    for name, token in forgeries.items():
        response = await api.me(token)
        assert response.status == 401, name
    assert (await api.me(tokens["access_token"])).status == 200


async def test_me_shows_the_user(api: Api) -> None:
    tokens = await api.register_verified("shown@example.com", full_name="Shown")

    response = await api.me(tokens["access_token"])

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    user = await response.json()
    assert user == tokens["user"]
    assert uuid.UUID(user["id"])
    assert user["created_at"].endswith("Z")


# --- session management --------------------------------------------------------------


async def test_sessions_are_listed_with_the_current_one_marked(api: Api) -> None:
    email = "lister@example.com"
    await api.register_verified(email)
    phone = await api.login(email, headers={"User-Agent": "phone/1.0"})
    laptop = await api.login(email, headers={"User-Agent": "laptop/2.0"})

    response = await api.get("/auth/sessions", token=laptop["access_token"])

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    sessions = (await response.json())["sessions"]
    assert len(sessions) == 3
    for session in sessions:
        assert set(session) == {
            "id",
            "created_at",
            "last_used_at",
            "user_agent",
            "ip",
            "current",
            "kind",
        }
        assert session["kind"] == "api"
    [current] = [s for s in sessions if s["current"]]
    assert current["id"] == claims_of(laptop["access_token"])["sid"]
    assert current["user_agent"] == "laptop/2.0"
    assert current["ip"] == "127.0.0.1"
    by_id = {s["id"]: s for s in sessions}
    assert by_id[claims_of(phone["access_token"])["sid"]]["user_agent"] == "phone/1.0"


async def test_a_user_ends_one_of_their_own_sessions(api: Api) -> None:
    email = "ender@example.com"
    keep = await api.register_verified(email)
    drop = await api.login(email)
    drop_id = claims_of(drop["access_token"])["sid"]

    response = await api.delete(f"/auth/sessions/{drop_id}", token=keep["access_token"])

    assert response.status == 204
    assert response.headers["Cache-Control"] == "no-store"
    await assert_rejected_bearer(api, drop["access_token"])
    await problem_of(await refresh(api, drop["refresh_token"]), 401, "invalid_token")
    listed = await (await api.get("/auth/sessions", token=keep["access_token"])).json()
    assert [s["id"] for s in listed["sessions"]] == [claims_of(keep["access_token"])["sid"]]
    again = await api.delete(f"/auth/sessions/{drop_id}", token=keep["access_token"])
    await problem_of(again, 404, "not_found")


async def test_another_users_session_is_not_found(api: Api) -> None:
    mine = await api.register_verified("mine@example.com")
    theirs = await api.register_verified("theirs@example.com")
    their_id = claims_of(theirs["access_token"])["sid"]

    other_user = await api.delete(f"/auth/sessions/{their_id}", token=mine["access_token"])
    garbage = await api.delete("/auth/sessions/not-a-session-id", token=mine["access_token"])
    unknown = await api.delete(f"/auth/sessions/{uuid.uuid4()}", token=mine["access_token"])

    for response in (other_user, garbage, unknown):
        await problem_of(response, 404, "not_found")
    assert await other_user.read() == await unknown.read()
    assert (await api.me(theirs["access_token"])).status == 200


async def test_session_endpoints_need_a_bearer(api: Api) -> None:
    for response in (
        await api.get("/auth/sessions"),
        await api.delete(f"/auth/sessions/{uuid.uuid4()}"),
        await api.post("/auth/logout-all"),
        await api.post(
            "/auth/change-password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        ),
    ):
        await problem_of(response, 401, "invalid_token")
        assert response.headers["WWW-Authenticate"] == BEARER_CHALLENGE


# --- change password -----------------------------------------------------------------


async def test_change_password_keeps_this_session_and_ends_the_others(api: Api) -> None:
    email = "changer@example.com"
    here = await api.register_verified(email)
    elsewhere = await api.login(email)

    response = await api.post(
        "/auth/change-password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=here["access_token"],
    )

    assert response.status == 200
    assert set(await response.json()) == {"message"}
    assert (await api.me(here["access_token"])).status == 200
    await refreshed(api, here["refresh_token"])
    await assert_rejected_bearer(api, elsewhere["access_token"])
    await problem_of(await refresh(api, elsewhere["refresh_token"]), 401, "invalid_token")
    old = await api.post("/auth/login", {"email": email, "password": PASSWORD})
    await problem_of(old, 401, "invalid_credentials")
    await api.login(email, NEW_PASSWORD)
    notice = await api.next_mail(email)
    assert "password" in str(notice["Subject"]).lower()


async def test_change_password_needs_the_current_password(api: Api) -> None:
    email = "careful@example.com"
    tokens = await api.register_verified(email)

    response = await api.post(
        "/auth/change-password",
        {"current_password": "not the password", "new_password": NEW_PASSWORD},
        token=tokens["access_token"],
    )

    await problem_of(response, 401, "invalid_credentials")
    await api.login(email)


async def test_change_password_refuses_a_weak_new_password(api: Api) -> None:
    email = "weakling@example.com"
    tokens = await api.register_verified(email)

    for weak in ("short", "password123"):
        response = await api.post(
            "/auth/change-password",
            {"current_password": PASSWORD, "new_password": weak},
            token=tokens["access_token"],
        )

        problem = await problem_of(response, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["new_password"], weak
    await api.login(email)


# --- published keys ------------------------------------------------------------------


async def test_jwks_and_discovery_describe_the_signing_keys(api: Api) -> None:
    jwks_response = await api.get("/.well-known/jwks.json")
    discovery_response = await api.get("/.well-known/openid-configuration")

    assert jwks_response.status == 200 and discovery_response.status == 200
    jwks = await jwks_response.json()
    assert jwks["keys"], jwks
    # The configured EdDSA key signs access tokens; an RS256 key beside it signs ID tokens.
    assert sorted(key["alg"] for key in jwks["keys"]) == ["EdDSA", "RS256"]
    for key in jwks["keys"]:
        if key["alg"] == "EdDSA":
            assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
        else:
            assert key["kty"] == "RSA"
        assert key["kid"]
        assert key.get("use", "sig") == "sig"
        assert "d" not in key  # never the private part
    discovery = await discovery_response.json()
    assert discovery["issuer"] == api.settings.issuer
    assert discovery["jwks_uri"] == f"{api.settings.issuer}/.well-known/jwks.json"
    assert discovery["id_token_signing_alg_values_supported"] == ["EdDSA", "RS256"]
    assert "email" in discovery["claims_supported"]
    # The authorization server's metadata (section 17) is the same document.
    assert discovery["introspection_endpoint"] == f"{api.settings.issuer}/oauth2/introspect"
    assert discovery["token_endpoint"] == f"{api.settings.issuer}/oauth2/token"


async def test_an_access_token_verifies_against_the_published_jwks(api: Api) -> None:
    tokens = await api.register_verified("verify@example.com")
    jwks = jwt.PyJWKSet.from_dict(await (await api.get("/.well-known/jwks.json")).json())
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]

    claims = jwt.decode(
        tokens["access_token"],
        jwks[kid].key,
        algorithms=["EdDSA"],
        audience=api.settings.audience,
        issuer=api.settings.issuer,
    )

    assert claims["typ"] == "access"
    assert claims["sub"] == tokens["user"]["id"]
    assert claims["email"] == "verify@example.com"
    assert claims["email_verified"] is True
    assert {"iat", "exp", "jti", "sid", "tid"} <= set(claims)
    assert uuid.UUID(claims["sid"]) and uuid.UUID(claims["tid"])
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    refresh_claims = claims_of(tokens["refresh_token"])
    assert refresh_claims["typ"] == "refresh"
    assert refresh_claims["sid"] == claims["sid"]


async def test_rs256_is_selectable_for_signing(make_api: MakeApi) -> None:
    api = await make_api(SIGNING_ALGORITHM="RS256")
    tokens = await api.register_verified("rsa@example.com")
    jwks = await (await api.get("/.well-known/jwks.json")).json()
    assert [(key["kty"], key["alg"]) for key in jwks["keys"]] == [("RSA", "RS256")]
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == jwks["keys"][0]["kid"]
    assert (await api.me(tokens["access_token"])).status == 200
