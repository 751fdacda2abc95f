"""A small GitHub served by aiohttp on 127.0.0.1, speaking GitHub's OAuth endpoint shapes.

Usage::

    async with FakeGitHub() as github:
        github.next_user(id=42, login="octocat", emails=[primary("octo@example.com")])
        # IDENTITY_GITHUB_BASE_URL=github.base_url, IDENTITY_GITHUB_API_URL=github.api_url
        callback = await github.browser_authorize(authorization_url)   # ?code&state back

Endpoints as GitHub has them: ``GET /login/oauth/authorize`` (the consent is
given at once: 302 to ``redirect_uri?code&state``), ``POST
/login/oauth/access_token`` (form; JSON when ``Accept: application/json``; a
refused code is **200** with ``{"error": "bad_verification_code"}``), and the
API's ``GET /user`` and ``GET /user/emails`` (Bearer token). Codes are single
use and bound to the PKCE challenge and ``redirect_uri`` of their authorize
request.

Fault modes with ``misbehave(...)``: ``slow`` (every endpoint hangs until the
fake closes), ``api_status`` (``/user`` and ``/user/emails`` answer it, e.g.
500), ``token_status`` (the token endpoint answers it). ``close()`` makes it
unreachable (provider down). Attributes: ``authorize_requests`` (query dicts),
``token_requests`` (form dicts), ``api_requests`` (paths).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer

from identity.domain.identities import OAuthClient

__all__ = ["FakeGitHub", "GitHubUser", "primary"]


def primary(email: str, *, verified: bool = True) -> dict[str, Any]:
    """An entry of ``/user/emails`` marked primary."""
    return {"email": email, "primary": True, "verified": verified, "visibility": "private"}


def secondary(email: str, *, verified: bool = True) -> dict[str, Any]:
    return {"email": email, "primary": False, "verified": verified, "visibility": None}


@attrs.frozen
class GitHubUser:
    id: int = 583231
    login: str = "octocat"
    name: str | None = "The Octocat"
    public_email: str | None = None
    emails: tuple[dict[str, Any], ...] = (primary("octocat@example.com"),)


@attrs.frozen
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    user: GitHubUser


class FakeGitHub:
    """GitHub's OAuth app flow and user API on 127.0.0.1; each test controls it."""

    def __init__(
        self, *, client_id: str = "gh-client-id", client_secret: str = "gh-client-secret"
    ) -> None:
        self.client = OAuthClient(client_id=client_id, client_secret=client_secret)
        self._server = TestServer(self._app(), host="127.0.0.1")
        self._user = GitHubUser()
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, GitHubUser] = {}
        self._closed = asyncio.Event()
        self.slow = False
        self.api_status: int | None = None
        self.token_status: int | None = None
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.api_requests: list[str] = []

    async def __aenter__(self) -> FakeGitHub:
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving; later requests fail to connect."""
        self._closed.set()  # hanging handlers finish, so shutdown is quick
        await self._server.close()

    @property
    def base_url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    @property
    def api_url(self) -> str:
        return self.base_url

    def next_user(self, **fields: Any) -> GitHubUser:
        """Sign in this user from now on (fields of ``GitHubUser``)."""
        if "emails" in fields:
            fields["emails"] = tuple(fields["emails"])
        self._user = GitHubUser(**fields)
        return self._user

    def misbehave(
        self, *, slow: bool = False, api_status: int | None = None, token_status: int | None = None
    ) -> None:
        """Replace the fault modes; no arguments = behave."""
        self.slow, self.api_status, self.token_status = slow, api_status, token_status

    async def browser_authorize(self, authorization_url: str) -> str:
        """GET the authorize URL like a browser; return where GitHub sends it back."""
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(authorization_url, allow_redirects=False) as response,
        ):
            if response.status != 302:
                raise AssertionError(f"/login/oauth/authorize answered {response.status}")
            return response.headers["Location"]

    # --- endpoints ---

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/login/oauth/authorize", self._authorize)
        app.router.add_post("/login/oauth/access_token", self._access_token)
        app.router.add_get("/user", self._get_user)
        app.router.add_get("/user/emails", self._get_emails)
        return app

    async def _stall(self) -> None:
        if self.slow:
            await self._closed.wait()

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_requests.append(query)
        await self._stall()
        if query.get("client_id") != self.client.client_id or not query.get("redirect_uri"):
            raise web.HTTPNotFound(text="unknown client")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise web.HTTPBadRequest(text="PKCE S256 expected")
        code = secrets.token_hex(10)  # GitHub codes are 20 hex characters
        self._grants[code] = _Grant(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            code_challenge=query["code_challenge"],
            user=self._user,
        )
        params = {"code": code, "state": query.get("state", "")}
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(params)}")

    async def _access_token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        await self._stall()
        if self.token_status is not None:
            return web.Response(status=self.token_status, text="unicorn")
        if "application/json" not in request.headers.get("Accept", ""):
            # GitHub's default is form encoding; this service must ask for JSON.
            return web.Response(
                text="error=wrong_accept", content_type="application/x-www-form-urlencoded"
            )
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client.client_id,
            self.client.client_secret,
        ):
            return web.json_response({"error": "incorrect_client_credentials"})
        grant = self._grants.pop(form.get("code", ""), None)  # single use
        if (
            grant is None
            or grant.redirect_uri != form.get("redirect_uri")
            or not _pkce_matches(form.get("code_verifier", ""), grant.code_challenge)
        ):
            return web.json_response(
                {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                }
            )
        token = "gho_" + secrets.token_urlsafe(27)
        self._tokens[token] = grant.user
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "scope": "user:email"}
        )

    async def _authorised_user(self, request: web.Request) -> GitHubUser:
        self.api_requests.append(request.path)
        await self._stall()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = self._tokens.get(token) if scheme.lower() in {"bearer", "token"} else None
        if user is None:
            raise web.HTTPUnauthorized(
                text='{"message": "Bad credentials"}', content_type="application/json"
            )
        return user

    async def _get_user(self, request: web.Request) -> web.Response:
        if self.api_status is not None:
            return web.json_response({"message": "failure"}, status=self.api_status)
        user = await self._authorised_user(request)
        return web.json_response(
            {
                "login": user.login,
                "id": user.id,
                "type": "User",
                "name": user.name,
                "email": user.public_email,
            }
        )

    async def _get_emails(self, request: web.Request) -> web.Response:
        if self.api_status is not None:
            return web.json_response({"message": "failure"}, status=self.api_status)
        user = await self._authorised_user(request)
        return web.json_response(list(user.emails))


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return bool(verifier) and hmac.compare_digest(expected, challenge)
