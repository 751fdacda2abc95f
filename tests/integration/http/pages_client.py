"""Helpers of the page tests: the real app through the test client, forms posted as a browser would.

``PageClient`` keeps the cookies (the test client's jar), reads each page's
CSRF token, and posts forms with it.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.integration.http.conftest import Api, MakeApi

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class PageClient:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.client = api.client
        self.token = ""
        self.html = ""

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        response = await self.client.get(path, allow_redirects=False, **kwargs)
        await self._read(response)
        return response

    async def _read(self, response: ClientResponse) -> None:
        if response.content_type == "text/html":
            self.html = await response.text()
            found = CSRF.search(self.html)
            if found:
                self.token = unescape(found.group(1))

    async def post(
        self, path: str, fields: dict[str, str], *, csrf: bool = True, **kwargs: Any
    ) -> ClientResponse:
        data = dict(fields)
        if csrf:
            data.setdefault("csrf_token", self.token)
        response = await self.client.post(path, data=data, allow_redirects=False, **kwargs)
        await self._read(response)
        return response

    async def follow(self, response: ClientResponse) -> ClientResponse:
        assert response.status == 303, await response.text()
        return await self.get(response.headers["Location"])

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None

    def text(self) -> str:
        """The page's text without tags, for assertions on wording."""
        return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", self.html)))


@pytest.fixture
async def pages(api: Api) -> PageClient:
    return PageClient(api)


@pytest.fixture
def make_pages(make_api: MakeApi) -> Any:
    async def build(**env: str) -> PageClient:
        return PageClient(await make_api(**env))

    return build
