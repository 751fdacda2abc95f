"""Asking the issuer whether a token is still active (RFC 7662), with a short cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp

from identity_verifier._errors import IssuerUnavailable
from identity_verifier._http import FETCH_TIMEOUT, FetchError, read_json

log = logging.getLogger("identity_verifier")

MAX_CACHED_ANSWERS: Final = 10_000


class Introspection:
    """Remembers each answer for ``ttl`` seconds; concurrent asks for one token share one call."""

    def __init__(
        self,
        api_key: str,
        ttl: float,
        endpoint: Callable[[], Awaitable[str]],
        session: Callable[[], Awaitable[aiohttp.ClientSession]],
        clock: Callable[[], float],
    ) -> None:
        self._authorization = f"Bearer {api_key}"
        self._ttl = ttl
        self._endpoint = endpoint
        self._session = session
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}
        self._asking: dict[str, asyncio.Task[bool]] = {}
        self.requests = 0  # calls made to the endpoint: for tests and metrics

    def __repr__(self) -> str:
        return f"Introspection(ttl={self._ttl})"  # never the key

    async def active(self, token: str) -> bool:
        """Whether the issuer calls ``token`` active; ``IssuerUnavailable`` if it cannot say."""
        answer = self._answers.get(token)
        if answer is not None:
            if self._clock() < answer[1]:
                return answer[0]
            del self._answers[token]
        task = self._asking.get(token)
        if task is None:
            task = asyncio.create_task(self._ask(token))
            self._asking[token] = task
            task.add_done_callback(lambda _: self._asking.pop(token, None))
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._asking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _ask(self, token: str) -> bool:
        self.requests += 1
        try:
            endpoint = await self._endpoint()
            session = await self._session()
            async with session.post(
                endpoint,
                data={"token": token},
                headers={"Authorization": self._authorization, "Accept": "application/json"},
                timeout=FETCH_TIMEOUT,
            ) as response:
                document = await read_json(response)
        except (aiohttp.ClientError, TimeoutError, FetchError) as error:
            # A 401/403 here means the API key is wrong or lacks tokens:introspect.
            log.error(
                "token introspection failed",
                extra={"error": str(error) or type(error).__name__},
            )
            raise IssuerUnavailable("the issuer could not be asked about the token") from None
        if not isinstance(document, dict) or not isinstance(document.get("active"), bool):
            raise IssuerUnavailable("the introspection answer has no 'active' member")
        active: bool = document["active"]
        if self._ttl > 0:
            if len(self._answers) >= MAX_CACHED_ANSWERS:
                self._answers.pop(next(iter(self._answers)), None)  # the oldest
            self._answers[token] = (active, self._clock() + self._ttl)
        return active
