"""GitHub sign-in: OAuth 2 (not OpenID Connect) with PKCE, the person read from the API.

GitHub issues no ID token: who signed in is what ``GET /user`` says with the
access token just redeemed, and the email is the primary address that
``GET /user/emails`` marks verified (the public profile email may be anything
the user typed). The subject is the numeric user id, which never changes
(logins can be renamed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from identity.application.ports import IdentityProvider
from identity.domain.errors import OAuthFailedError, ProviderUnavailableError
from identity.domain.identities import ExternalIdentity, OAuthClient

logger = logging.getLogger(__name__)

GITHUB_BASE_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
SCOPE = "user:email"
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubIdentityProvider(IdentityProvider):
    """GitHub as an ``IdentityProvider``; ``http`` is a session the caller owns."""

    name = "github"

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        base_url: str = GITHUB_BASE_URL,
        api_url: str = GITHUB_API_URL,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._api = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def authorization_url(
        self,
        client: OAuthClient,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """The authorize URL (no network call; GitHub has no nonce)."""
        params = {
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self._base}/login/oauth/authorize?{urlencode(params)}"

    async def exchange(
        self,
        client: OAuthClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        nonce: str,
    ) -> ExternalIdentity:
        """Redeem ``code``, then read the user and their verified primary email."""
        if not (code and code_verifier):
            raise OAuthFailedError("incomplete sign-in request")
        try:
            token = await self._redeem(client, code, redirect_uri, code_verifier)
            user = await self._api_get("/user", token)
            emails = await self._api_get("/user/emails", token)
            return _identity(user, emails)
        except (OAuthFailedError, ProviderUnavailableError):
            raise
        except Exception as error:
            logger.error("unexpected error during GitHub sign-in: %s", type(error).__name__)
            raise OAuthFailedError("sign-in with the provider failed") from None

    async def _redeem(
        self, client: OAuthClient, code: str, redirect_uri: str, code_verifier: str
    ) -> str:
        form = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        url = f"{self._base}/login/oauth/access_token"
        status, body = await self._call(
            "POST", url, data=form, headers={"Accept": "application/json"}
        )
        # GitHub answers a refused code with 200 and an "error" member.
        if status != 200 or not isinstance(body, dict) or "error" in body:
            error = body.get("error") if isinstance(body, dict) else None
            logger.warning(
                "GitHub refused the code: status=%s error=%s",
                status,
                error if isinstance(error, str) else None,
            )
            raise OAuthFailedError("the provider refused the sign-in")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthFailedError("the provider returned no access token")
        return token

    async def _api_get(self, path: str, token: str) -> Any:
        headers = {**_API_HEADERS, "Authorization": f"Bearer {token}"}
        status, body = await self._call("GET", f"{self._api}{path}", headers=headers)
        if status != 200:
            logger.warning("GitHub API refused %s: status=%s", path, status)
            raise OAuthFailedError("the provider refused the sign-in")
        return body

    async def _call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One HTTP call; unreachable, slow or failing (5xx) means unavailable."""
        try:
            async with self._http.request(
                method,
                url,
                data=data,
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as error:
            parts = urlsplit(url)
            logger.warning(
                "GitHub unreachable: %s %s://%s%s",
                type(error).__name__,
                parts.scheme,
                parts.netloc,
                parts.path,
            )
            raise ProviderUnavailableError("the provider is unavailable") from None
        if status >= 500:
            logger.warning("GitHub failed: status=%s", status)
            raise ProviderUnavailableError("the provider is unavailable")
        return status, body


def _identity(user: Any, emails: Any) -> ExternalIdentity:
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise OAuthFailedError("the provider did not say who signed in")
    primary = next(
        (
            entry["email"]
            for entry in (emails if isinstance(emails, list) else [])
            if isinstance(entry, dict)
            and entry.get("primary") is True
            and entry.get("verified") is True
            and isinstance(entry.get("email"), str)
            and entry["email"]
        ),
        None,
    )
    if primary is None:
        raise OAuthFailedError("the GitHub account has no verified primary email address")
    name = user.get("name") or user.get("login")
    return ExternalIdentity(
        provider=GitHubIdentityProvider.name,
        subject=str(user["id"]),
        email=primary,
        email_verified=True,
        name=name if isinstance(name, str) and name else None,
    )
