"""A local stand-in for the HTTP email API: a real aiohttp server on a free port
that records what it accepts, or answers with the status a test sets."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from aiohttp import web


class FakeEmailApi:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.answer_status = 202
        self.arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeEmailApi:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "bad API key"}, status=401)
        if self.answer_status >= 300:
            return web.json_response({"error": "refused"}, status=self.answer_status)
        body = await request.json()
        async with self.arrived:
            self.received.append(body)
            self.arrived.notify_all()
        return web.json_response({"id": len(self.received)}, status=self.answer_status)

    async def wait_for(self, count: int, within_seconds: float = 5.0) -> list[dict[str, Any]]:
        """The messages received, once there are at least ``count`` (or TimeoutError)."""
        async with asyncio.timeout(within_seconds), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)
