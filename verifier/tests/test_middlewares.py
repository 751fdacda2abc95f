"""Downstream apps protected by the verifier: aiohttp, Starlette and FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from identity_verifier import Verifier

from identity_server import IdentityServer

CHALLENGE = 'Bearer error="invalid_token"'


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def tokens(identity_server: IdentityServer) -> dict[str, Any]:
    return await identity_server.sign_up()


# --- aiohttp ----------------------------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"sub": request["identity"]["sub"]})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "identity": "identity" in request})


@pytest.fixture
async def aiohttp_app(
    make_verifier: Callable[..., Verifier],
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    verifier = make_verifier()
    app = web.Application(middlewares=[verifier.aiohttp_middleware(public={"/health"})])
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/health", health)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_an_aiohttp_app_sees_the_claims_of_a_valid_token(
    aiohttp_app: TestClient[web.Request, web.Application], tokens: dict[str, Any]
) -> None:
    response = await aiohttp_app.get("/whoami", headers=bearer(tokens["access_token"]))

    assert response.status == 200
    assert await response.json() == {"sub": tokens["user"]["id"]}


async def test_an_aiohttp_app_answers_401_with_a_bearer_challenge(
    aiohttp_app: TestClient[web.Request, web.Application],
    identity_server: IdentityServer,
    tokens: dict[str, Any],
) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer(tokens["refresh_token"]),
        bearer(identity_server.expired_access_token()),
    ):
        response = await aiohttp_app.get("/whoami", headers=headers)

        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
        assert problem["status"] == 401 and problem["code"] == "invalid_token"
        assert tokens["refresh_token"] not in await response.text()


async def test_an_aiohttp_app_leaves_public_paths_open(
    aiohttp_app: TestClient[web.Request, web.Application],
) -> None:
    response = await aiohttp_app.get("/health")

    assert response.status == 200
    assert await response.json() == {"status": "ok", "identity": False}


async def test_an_aiohttp_app_answers_503_while_the_issuer_was_never_reached(
    aiohttp_app: TestClient[web.Request, web.Application],
    identity_server: IdentityServer,
    tokens: dict[str, Any],
) -> None:
    await identity_server.stop_listening()

    response = await aiohttp_app.get("/whoami", headers=bearer(tokens["access_token"]))

    assert response.status == 503
    assert (await response.json(content_type=None))["code"] == "issuer_unavailable"


# --- Starlette and FastAPI --------------------------------------------------------------


async def starlette_whoami(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.scope["identity"]["sub"]})


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


async def test_a_starlette_app_is_protected_by_the_asgi_middleware(
    make_verifier: Callable[..., Verifier], tokens: dict[str, Any]
) -> None:
    app = Starlette(routes=[Route("/whoami", starlette_whoami)])
    app.add_middleware(make_verifier().asgi_middleware())

    async with client_of(app) as client:
        good = await client.get("/whoami", headers=bearer(tokens["access_token"]))
        missing = await client.get("/whoami")
        refresh = await client.get("/whoami", headers=bearer(tokens["refresh_token"]))

    assert good.status_code == 200 and good.json() == {"sub": tokens["user"]["id"]}
    for refused in (missing, refresh):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith(CHALLENGE)
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["code"] == "invalid_token"


async def test_a_fastapi_route_takes_the_claims_from_a_dependency(
    make_verifier: Callable[..., Verifier], tokens: dict[str, Any]
) -> None:
    verifier = make_verifier()
    app = FastAPI()

    @app.get("/whoami")
    async def fastapi_whoami(
        claims: dict[str, Any] = Depends(verifier.dependency()),  # noqa: B008
    ) -> dict[str, Any]:
        return {"sub": claims["sub"]}

    @app.get("/open")
    async def fastapi_open() -> dict[str, str]:
        return {"status": "ok"}

    async with client_of(app) as client:
        good = await client.get("/whoami", headers=bearer(tokens["access_token"]))
        bad = await client.get("/whoami", headers=bearer(tokens["refresh_token"]))
        open_route = await client.get("/open")

    assert good.status_code == 200 and good.json() == {"sub": tokens["user"]["id"]}
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith(CHALLENGE)
    assert bad.json() == {"detail": "algorithm not allowed"}  # a MACed refresh token
    assert open_route.status_code == 200


async def test_the_dependency_reuses_the_claims_the_middleware_found(
    make_verifier: Callable[..., Verifier],
    tokens: dict[str, Any],
    jwks_requests: Any,
) -> None:
    verifier = make_verifier(introspect_with="idk_not_a_real_key", introspection_ttl=0)
    app = FastAPI()
    app.add_middleware(make_verifier().asgi_middleware())

    @app.get("/whoami")
    async def fastapi_whoami(
        claims: dict[str, Any] = Depends(verifier.dependency()),  # noqa: B008
    ) -> dict[str, Any]:
        return {"sub": claims["sub"]}

    async with client_of(app) as client:
        response = await client.get("/whoami", headers=bearer(tokens["access_token"]))

    assert response.status_code == 200
    # Had the dependency verified again, its (bogus) key would have been used.
    assert jwks_requests.count("/oauth2/introspect") == 0
