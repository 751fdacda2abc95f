"""Multi-factor authentication over HTTP on Postgres: every first factor, the second
step, step-up, recovery codes, removal and the aal2 rule.

The app's clock is a ``ManualClock`` moved by the tests, so TOTP time steps are
chosen exactly (no sleeps); the token leeway is widened to match.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import jwt
import pyotp
import pytest
from dependency_injector import providers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.clock import ManualClock
from identity.adapters.sqlalchemy import tables
from identity.entrypoints.http.app import build_container
from identity.entrypoints.http.handlers.google import COOKIE
from identity.entrypoints.settings import Settings
from tests.fakes import manual_clock
from tests.github_provider import FakeGitHub, primary
from tests.integration.http.conftest import PASSWORD, Api, MakeApi, problem_of
from tests.oidc_provider import FakeOidcProvider

EMAIL = "ada@example.com"
BROWSER = {"User-Agent": "browser/1.0"}
SKEW = {"CLOCK_SKEW": "1h"}  # the fixed clock runs ahead of PyJWT's real one


@attrs.define
class Mfa:
    """One app with a hand-moved clock, and what enabling MFA gave."""

    api: Api
    clock: ManualClock
    secret: str = ""
    recovery_codes: list[str] = attrs.Factory(list)
    tokens: dict[str, Any] = attrs.Factory(dict)

    def code(self, steps: int = 0) -> str:
        return pyotp.TOTP(self.secret).at(self.clock.now(), counter_offset=steps)

    def next_step(self) -> None:
        self.clock.advance(seconds=30)

    async def enable(self, tokens: dict[str, Any]) -> None:
        """Enroll and confirm on the session of ``tokens``; the confirming step is spent."""
        access = tokens["access_token"]
        response = await self.api.post("/auth/mfa/totp/enroll", token=access)
        enrolled = await response.json()
        assert response.status == 200, enrolled
        assert set(enrolled) == {"factor_id", "secret", "otpauth_uri"}
        self.secret = enrolled["secret"]
        response = await self.api.post(
            "/auth/mfa/totp/confirm", {"code": self.code()}, token=access
        )
        body = await response.json()
        assert response.status == 200, body
        self.recovery_codes = body["recovery_codes"]
        self.tokens = tokens
        self.next_step()

    async def first_factor(self, email: str = EMAIL, **headers: str) -> str:
        response = await self.api.post(
            "/auth/login",
            {"email": email, "password": PASSWORD},
            headers={**BROWSER, **headers},
        )
        body = await response.json()
        assert response.status == 200, body
        assert body["mfa_required"] is True and "access_token" not in body, body
        assert body["methods"] == ["totp", "recovery_code"]
        assert body["expires_in"] == 300
        return str(body["mfa_token"])

    async def verify(self, mfa_token: str, **proof: str) -> Any:
        return await self.api.post(
            "/auth/mfa/verify", {"mfa_token": mfa_token, **proof}, headers=BROWSER
        )


def claims(access_token: str) -> dict[str, Any]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


@pytest.fixture
def mfa_app(make_api: MakeApi, settings_for: Callable[..., Settings]) -> Callable[..., Any]:
    async def build(**env: str) -> Mfa:
        clock = manual_clock()
        # Midway through a step, so one step of drift either way is clear-cut.
        clock.advance(seconds=(15 - clock.now().timestamp() % 30) % 30)
        container = build_container(settings_for(**SKEW, **env))
        container.clock.override(providers.Object(clock))
        return Mfa(await make_api(container=container), clock)

    return build


@pytest.fixture
async def mfa(mfa_app: Callable[..., Any]) -> Mfa:
    app: Mfa = await mfa_app()
    await app.enable(await app.api.register_verified(EMAIL))
    return app


async def test_password_login_then_the_second_factor(mfa: Mfa) -> None:
    me = await (await mfa.api.me(mfa.tokens["access_token"])).json()
    assert me["mfa_enabled"] is True
    assert len(mfa.recovery_codes) == 10

    token = await mfa.first_factor()
    response = await mfa.verify(token, code=mfa.code())
    tokens = await response.json()
    assert response.status == 200, tokens
    assert tokens["user"]["mfa_enabled"] is True
    assert {k: claims(tokens["access_token"])[k] for k in ("aal", "amr")} == {
        "aal": "aal2",
        "amr": ["pwd", "totp"],
    }
    # Single use, even with a fresh code.
    mfa.next_step()
    await problem_of(await mfa.verify(token, code=mfa.code()), 401, "invalid_token")
    # A refreshed access token keeps the session's assurance.
    response = await mfa.api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    refreshed = await response.json()
    assert claims(refreshed["access_token"])["aal"] == "aal2"
    assert claims(refreshed["access_token"])["amr"] == ["pwd", "totp"]


async def test_time_steps_one_of_drift_and_no_replay(mfa: Mfa) -> None:
    mfa.next_step()  # the step before is unused
    await problem_of(
        await mfa.verify(await mfa.first_factor(), code=mfa.code(-2)), 400, "mfa_invalid"
    )
    await problem_of(
        await mfa.verify(await mfa.first_factor(), code=mfa.code(2)), 400, "mfa_invalid"
    )
    assert (await mfa.verify(await mfa.first_factor(), code=mfa.code(-1))).status == 200
    replayed = await mfa.verify(await mfa.first_factor(), code=mfa.code(-1))
    await problem_of(replayed, 400, "mfa_invalid")
    assert (await mfa.verify(await mfa.first_factor(), code=mfa.code(1))).status == 200
    # Step +1 is spent: the current step is now older than the last accepted one.
    await problem_of(
        await mfa.verify(await mfa.first_factor(), code=mfa.code()), 400, "mfa_invalid"
    )


async def test_an_emailed_code_login_asks_too_and_recovery_codes_are_single_use(
    mfa: Mfa,
) -> None:
    code = await mfa.api.request_code(EMAIL, "login")
    response = await mfa.api.post(
        "/auth/verify-otp",
        {"email": EMAIL, "otp_code": code, "purpose": "login"},
        headers=BROWSER,
    )
    body = await response.json()
    assert response.status == 200 and body["mfa_required"] is True, body

    recovery = mfa.recovery_codes[0]
    response = await mfa.verify(body["mfa_token"], recovery_code=recovery.upper())
    tokens = await response.json()
    assert response.status == 200, tokens
    assert claims(tokens["access_token"])["amr"] == ["otp", "recovery"]
    again = await mfa.verify(await mfa.first_factor(), recovery_code=recovery)
    await problem_of(again, 400, "mfa_invalid")


async def test_five_wrong_codes_then_the_token_is_dead(mfa: Mfa) -> None:
    token = await mfa.first_factor()
    wrong = f"{(int(mfa.code()) + 500_000) % 1_000_000:06d}"
    for _ in range(5):
        await problem_of(await mfa.verify(token, code=wrong), 400, "mfa_invalid")
    await problem_of(await mfa.verify(token, code=mfa.code()), 401, "invalid_token")


async def test_the_token_belongs_to_its_client_tenant_and_five_minutes(
    mfa: Mfa,
) -> None:
    container = mfa.api.container
    await container.tenant_admin().create("other")
    token = await mfa.first_factor()
    response = await mfa.api.post(
        "/auth/mfa/verify",
        {"mfa_token": token, "code": mfa.code()},
        headers={**BROWSER, "X-Tenant": "other"},
    )
    await problem_of(response, 401, "invalid_token")
    response = await mfa.api.post(
        "/auth/mfa/verify",
        {"mfa_token": token, "code": mfa.code()},
        headers={"User-Agent": "another-client/2"},
    )
    await problem_of(response, 401, "invalid_token")
    mfa.clock.advance(seconds=301)
    await problem_of(await mfa.verify(token, code=mfa.code()), 401, "invalid_token")


BAD_PROOFS: list[dict[str, Any]] = [
    {"code": "12345a"},
    {"code": "12345"},
    {"code": "1234567"},
    {"code": 123456},
    {"code": "RECOVERY"},  # a recovery code in the TOTP field
    {"recovery_code": "123456"},
    {"recovery_code": "abcd-efgh"},
    {},
    {"code": "123456", "recovery_code": "RECOVERY"},
]


async def test_bad_input_is_422_and_consumes_nothing(mfa: Mfa) -> None:
    recovery = mfa.recovery_codes[0]
    token = await mfa.first_factor()
    for proof in BAD_PROOFS:
        body = {k: recovery if v == "RECOVERY" else v for k, v in proof.items()}
        await problem_of(await mfa.verify(token, **body), 422, "validation_error")
        response = await mfa.api.post("/auth/mfa/step-up", body, token=mfa.tokens["access_token"])
        await problem_of(response, 422, "validation_error")
    # Neither the token's tries nor the recovery code were spent.
    assert (await mfa.verify(token, recovery_code=recovery)).status == 200


async def test_malformed_requests_to_verify(mfa: Mfa) -> None:
    response = await mfa.api.post(
        "/auth/mfa/verify", data=b"{", headers={"Content-Type": "application/json"}
    )
    await problem_of(response, 400, "malformed_json")
    await problem_of(await mfa.verify("not-a-token", code=mfa.code()), 401, "invalid_token")
    response = await mfa.api.post("/auth/mfa/verify", {"code": mfa.code()})
    await problem_of(response, 422, "validation_error")


async def test_concurrent_submissions_of_one_code_give_one_success(mfa: Mfa) -> None:
    tokens = [await mfa.first_factor() for _ in range(5)]
    code = mfa.code()
    responses = await asyncio.gather(*(mfa.verify(token, code=code) for token in tokens))
    statuses = sorted(response.status for response in responses)
    assert statuses == [200, 400, 400, 400, 400], statuses

    tokens = [await mfa.first_factor() for _ in range(5)]
    recovery = mfa.recovery_codes[0]
    responses = await asyncio.gather(
        *(mfa.verify(token, recovery_code=recovery) for token in tokens)
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [200, 400, 400, 400, 400], statuses


async def test_other_sessions_stay_aal1_until_they_step_up(
    mfa_app: Callable[..., Any],
) -> None:
    mfa: Mfa = await mfa_app()
    first = await mfa.api.register_verified(EMAIL)
    laptop = await mfa.api.login(EMAIL)
    await mfa.enable(first)
    access = laptop["access_token"]

    response = await mfa.api.post(
        "/auth/change-password",
        {"current_password": PASSWORD, "new_password": "another long passphrase 7"},
        token=access,
    )
    await problem_of(response, 403, "mfa_required")
    await problem_of(
        await mfa.api.post("/auth/mfa/recovery-codes", token=access), 403, "mfa_required"
    )
    response = await mfa.api.client.delete(
        "/auth/mfa/totp",
        json={"code": mfa.code()},
        headers={"Authorization": f"Bearer {access}"},
    )
    await problem_of(response, 403, "mfa_required")

    response = await mfa.api.post("/auth/mfa/step-up", {"code": mfa.code()}, token=access)
    stepped = await response.json()
    assert response.status == 200, stepped
    assert stepped["refresh_token"] == laptop["refresh_token"]  # the same session
    assert claims(stepped["access_token"])["aal"] == "aal2"
    response = await mfa.api.post("/auth/mfa/recovery-codes", token=access)
    renewed = (await response.json())["recovery_codes"]
    assert response.status == 200 and len(renewed) == 10
    old = await mfa.verify(await mfa.first_factor(), recovery_code=mfa.recovery_codes[1])
    await problem_of(old, 400, "mfa_invalid")
    assert (await mfa.verify(await mfa.first_factor(), recovery_code=renewed[1])).status == 200


async def test_disabling_ends_every_other_session(mfa: Mfa) -> None:
    other = await (await mfa.verify(await mfa.first_factor(), code=mfa.code())).json()
    mfa.next_step()
    access = mfa.tokens["access_token"]
    response = await mfa.api.client.delete(
        "/auth/mfa/totp", json={"code": mfa.code(5)}, headers={"Authorization": f"Bearer {access}"}
    )
    await problem_of(response, 400, "mfa_invalid")
    response = await mfa.api.client.delete(
        "/auth/mfa/totp", json={"code": mfa.code()}, headers={"Authorization": f"Bearer {access}"}
    )
    assert response.status == 200, await response.text()

    assert (await mfa.api.me(other["access_token"])).status == 401
    assert (await (await mfa.api.me(access)).json())["mfa_enabled"] is False
    assert "access_token" in await mfa.api.login(EMAIL)


async def test_state_errors(mfa_app: Callable[..., Any]) -> None:
    mfa: Mfa = await mfa_app()
    access = (await mfa.api.register_verified(EMAIL))["access_token"]
    response = await mfa.api.post("/auth/mfa/totp/confirm", {"code": "123456"}, token=access)
    await problem_of(response, 400, "mfa_invalid")
    response = await mfa.api.post("/auth/mfa/step-up", {"code": "123456"}, token=access)
    await problem_of(response, 409, "mfa_not_enabled")
    await problem_of(
        await mfa.api.post("/auth/mfa/recovery-codes", token=access), 409, "mfa_not_enabled"
    )
    await problem_of(await mfa.api.post("/auth/mfa/totp/enroll"), 401, "invalid_token")
    await mfa.enable(await mfa.api.login(EMAIL))
    await problem_of(
        await mfa.api.post("/auth/mfa/totp/enroll", token=mfa.tokens["access_token"]),
        409,
        "mfa_already_enabled",
    )


async def test_the_secret_and_codes_are_not_stored_in_clear_and_go_with_the_account(
    mfa: Mfa,
) -> None:
    engine = create_async_engine(mfa.api.settings.database_url)
    try:
        async with engine.begin() as connection:
            factor = (await connection.execute(select(tables.totp_factors))).one()
            assert mfa.secret.encode() not in factor.secret
            hashes = [
                row.code_hash for row in await connection.execute(select(tables.recovery_codes))
            ]
            assert len(hashes) == 10
            assert not {code.replace("-", "") for code in mfa.recovery_codes} & set(hashes)
            await connection.execute(tables.users.delete())
            for table in (tables.totp_factors, tables.recovery_codes, tables.mfa_challenges):
                assert (await connection.execute(select(table))).first() is None
    finally:
        await engine.dispose()


async def test_google_sign_in_asks_for_the_second_factor(
    mfa_app: Callable[..., Any],
) -> None:
    async with FakeOidcProvider() as provider:
        mfa: Mfa = await mfa_app(
            ISSUER="http://127.0.0.1:8000",
            GOOGLE_CLIENT_ID=provider.client.client_id,
            GOOGLE_CLIENT_SECRET=provider.client.client_secret,
            GOOGLE_DISCOVERY_URL=provider.discovery_url,
            OAUTH_REDIRECT_ALLOWLIST="https://app.example.com/",
        )
        provider.next_identity(sub="g-42", email=EMAIL, name="Ada")

        async def google(redirect_to: str | None = None) -> Any:
            query = {"redirect_to": redirect_to} if redirect_to else {}
            response = await mfa.api.get(
                "/auth/google/login", params=query, allow_redirects=False, headers=BROWSER
            )
            assert response.status == 302, await response.text()
            cookie = response.cookies[COOKIE].value
            back = urlsplit(await provider.browser_authorize(response.headers["Location"]))
            return await mfa.api.get(
                f"{back.path}?{back.query}",
                allow_redirects=False,
                headers={**BROWSER, "Cookie": f"{COOKIE}={cookie}"},
            )

        signed_in = await (await google()).json()
        assert claims(signed_in["access_token"])["amr"] == ["fed"]
        await mfa.enable(signed_in)

        response = await google()
        body = await response.json()
        assert response.status == 200 and body["mfa_required"] is True, body
        tokens = await (await mfa.verify(body["mfa_token"], code=mfa.code())).json()
        assert claims(tokens["access_token"])["amr"] == ["fed", "totp"]

        response = await google(redirect_to="https://app.example.com/done")
        assert response.status == 302
        fragment = parse_qs(urlsplit(response.headers["Location"]).fragment)
        assert fragment["mfa_required"] == ["true"] and "access_token" not in fragment
        mfa.next_step()
        verified = await mfa.verify(fragment["mfa_token"][0], code=mfa.code())
        assert verified.status == 200, await verified.text()


async def test_github_and_named_oidc_sign_ins_ask_for_the_second_factor(
    mfa_app: Callable[..., Any],
) -> None:
    async with FakeGitHub() as github, FakeOidcProvider() as corp:
        mfa: Mfa = await mfa_app(
            ISSUER="http://127.0.0.1:8000",
            GITHUB_CLIENT_ID=github.client.client_id,
            GITHUB_CLIENT_SECRET=github.client.client_secret,
            GITHUB_BASE_URL=github.base_url,
            GITHUB_API_URL=github.api_url,
            OIDC_PROVIDERS="corp",
            OIDC_CORP_CLIENT_ID=corp.client.client_id,
            OIDC_CORP_CLIENT_SECRET=corp.client.client_secret,
            OIDC_CORP_DISCOVERY_URL=corp.discovery_url,
        )
        github.next_user(id=4242, emails=[primary(EMAIL)])
        corp.next_identity(sub="corp-42", email=EMAIL)

        async def sign_in(base: str, fake: FakeGitHub | FakeOidcProvider) -> Any:
            response = await mfa.api.get(f"{base}/login", allow_redirects=False, headers=BROWSER)
            assert response.status == 302, await response.text()
            cookie = response.cookies[COOKIE].value
            back = urlsplit(await fake.browser_authorize(response.headers["Location"]))
            answer = await mfa.api.get(
                f"{back.path}?{back.query}",
                allow_redirects=False,
                headers={**BROWSER, "Cookie": f"{COOKIE}={cookie}"},
            )
            assert answer.status == 200, await answer.text()
            return await answer.json()

        signed_in = await sign_in("/auth/github", github)
        assert claims(signed_in["access_token"])["amr"] == ["fed"]
        await mfa.enable(signed_in)

        for base, fake in (("/auth/github", github), ("/auth/oidc/corp", corp)):
            body = await sign_in(base, fake)  # corp: linked by the vouched-for email
            assert body["mfa_required"] is True and "access_token" not in body, base


async def test_wrong_codes_count_against_the_login_limit_per_account(
    mfa_app: Callable[..., Any],
) -> None:
    mfa: Mfa = await mfa_app(RATE_LIMIT_LOGIN="4/minute")
    await mfa.enable(await mfa.api.register_verified(EMAIL))  # the confirmation counts
    token = await mfa.first_factor()
    wrong = f"{(int(mfa.code()) + 500_000) % 1_000_000:06d}"
    for _ in range(3):
        await problem_of(await mfa.verify(token, code=wrong), 400, "mfa_invalid")
    await problem_of(await mfa.verify(token, code=mfa.code()), 429, "rate_limited")


async def test_an_administrator_removes_every_factor(mfa: Mfa) -> None:
    user_id = mfa.tokens["user"]["id"]
    path = f"/admin/users/{user_id}/mfa"
    reader = await mfa.api.api_key("users:read")
    await mfa.api.container.tenant_admin().create("other")
    other_tenant = await mfa.api.api_key("users:write", tenant="other")
    await problem_of(await mfa.api.delete(path, token=reader), 403, "insufficient_scope")
    await problem_of(await mfa.api.delete(path, token=other_tenant), 404, "not_found")
    writer = await mfa.api.api_key("users:write")
    await problem_of(
        await mfa.api.delete(f"/admin/users/{uuid.uuid4()}/mfa", token=writer), 404, "not_found"
    )

    response = await mfa.api.delete(path, token=writer)
    assert response.status == 200, await response.text()
    assert (await mfa.api.me(mfa.tokens["access_token"])).status == 401
    tokens = await mfa.api.login(EMAIL)
    assert tokens["user"]["mfa_enabled"] is False
    assert claims(tokens["access_token"])["aal"] == "aal1"


async def test_mfa_records_its_events(mfa: Mfa) -> None:
    reader = await mfa.api.api_key("events:read")

    async def events(type: str) -> list[dict[str, Any]]:
        response = await mfa.api.get("/admin/events", token=reader, params={"type": type})
        return list((await response.json())["items"])

    [enabled] = await events("mfa.enabled")
    assert enabled["data"] == {"factor": "totp"}
    token = await mfa.first_factor()
    assert [e["data"]["aal"] for e in await events("login.succeeded")] == ["aal1"]  # before MFA
    tokens = await (await mfa.verify(token, recovery_code=mfa.recovery_codes[0])).json()
    [used] = await events("mfa.recovery_code_used")
    aal2 = (await events("login.succeeded"))[0]
    assert aal2["data"] == {
        "method": "password",
        "aal": "aal2",
        "second_factor": "recovery",
    }
    assert used["session_id"] == aal2["session_id"] and aal2["user_agent"] == "browser/1.0"
    access = mfa.tokens["access_token"]
    response = await mfa.api.client.delete(
        "/auth/mfa/totp", json={"code": mfa.code()}, headers={"Authorization": f"Bearer {access}"}
    )
    assert response.status == 200, await response.text()
    [disabled] = await events("mfa.disabled")
    assert disabled["data"] == {"by": "user"}
    [revoked] = await events("session.revoked")
    assert revoked["data"] == {"reason": "revoked_by_user", "sessions_revoked": 1}
    assert tokens["access_token"] not in str(await events("login.succeeded"))
