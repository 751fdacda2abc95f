"""The notes service against a real identity, through identity's pytest plugin.

``identity_server`` and ``identity_user`` come from the plugin (entry point
``pytest11``); ``aiohttp_client`` from pytest-aiohttp.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from notes_service.app import create_app

from identity.testing import SignedInUser, SyncIdentityTestServer

MakeClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def notes(
    identity_server: SyncIdentityTestServer, aiohttp_client: MakeClient
) -> TestClient[Any, Any]:
    app = create_app(
        jwks_url=identity_server.jwks_url,
        issuer=identity_server.issuer,
        audience=identity_server.audience,
    )
    return await aiohttp_client(app)


async def test_a_signed_in_user_keeps_their_own_notes(
    notes: TestClient[Any, Any], identity_user: SignedInUser
) -> None:
    auth = {"Authorization": f"Bearer {identity_user.access_token}"}
    added = await notes.post("/notes", json={"text": "buy milk"}, headers=auth)
    assert added.status == 201
    response = await notes.get("/notes", headers=auth)
    assert response.status == 200
    assert await response.json() == {
        "owner": str(identity_user.id),
        "email": identity_user.email,
        "notes": ["buy milk"],
    }


async def test_another_user_sees_none_of_them(
    notes: TestClient[Any, Any],
    identity_server: SyncIdentityTestServer,
    identity_user: SignedInUser,
) -> None:
    mine = {"Authorization": f"Bearer {identity_user.access_token}"}
    assert (await notes.post("/notes", json={"text": "secret"}, headers=mine)).status == 201
    other = identity_server.sign_in()
    response = await notes.get("/notes", headers={"Authorization": f"Bearer {other.access_token}"})
    assert (await response.json())["notes"] == []


async def test_no_token_a_refresh_token_or_a_forged_one_is_refused(
    notes: TestClient[Any, Any], identity_user: SignedInUser
) -> None:
    header, payload, _signature = identity_user.access_token.split(".")
    forged = f"{header}.{payload}.{'A' * 86}"
    for headers in (
        {},
        {"Authorization": f"Bearer {identity_user.refresh_token}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer not-a-token"},
    ):
        response = await notes.get("/notes", headers=headers)
        assert response.status == 401, headers
    assert (await notes.get("/health")).status == 200


def test_a_plain_test_signs_in_over_http_and_checks_the_token_itself(
    identity_server: SyncIdentityTestServer,
) -> None:
    user = identity_server.create_user("ada@example.com", password="correct horse 42")
    request = urllib.request.Request(
        f"{identity_server.url}/auth/login",
        data=json.dumps({"email": user.email, "password": user.password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        tokens = json.loads(response.read())
    key = jwt.PyJWKClient(identity_server.jwks_url).get_signing_key_from_jwt(tokens["access_token"])
    claims = jwt.decode(
        tokens["access_token"],
        key.key,
        algorithms=["EdDSA", "RS256"],
        issuer=identity_server.issuer,
        audience=identity_server.audience,
    )
    assert claims["sub"] == str(user.id)
    assert claims["email"] == "ada@example.com"
