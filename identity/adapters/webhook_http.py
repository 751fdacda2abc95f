"""Webhook targets over HTTP: the SSRF guard and the sender (aiohttp).

The guard resolves a URL's host and refuses it when any address is not
public. The sender checks again at every attempt, on the very addresses it
connects to (its connector's resolver filters them), so a name that resolved
to a public address at creation and to a private one later (DNS rebinding)
is still refused. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from identity.application.ports import WebhookDeliveryError, WebhookSender, WebhookTargetGuard
from identity.domain.webhooks import WebhookUrlRefusedError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REFUSED_ADDRESS = (
    "must not point to a loopback, private, link-local, multicast or unspecified address"
)


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class PublicTargetGuard(WebhookTargetGuard):
    """Refuses non-http(s) URLs and, unless ``allow_private``, hosts with a non-public address."""

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise WebhookUrlRefusedError("must be a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookUrlRefusedError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise WebhookUrlRefusedError("must not carry credentials")
        if self.allow_private:
            return
        for address in await self.addresses(parts.hostname, port):
            if not is_public(address):
                raise WebhookUrlRefusedError(REFUSED_ADDRESS)

    @staticmethod
    async def addresses(host: str, port: int) -> list[IpAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, ValueError):
            raise WebhookUrlRefusedError("must name a host that resolves") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not found:
            raise WebhookUrlRefusedError("must name a host that resolves")
        return found


class _RefusedTargetError(OSError):
    """A name resolved to a non-public address (raised inside aiohttp's connector)."""


class _PublicOnlyResolver(AbstractResolver):
    """The connector's resolver: any non-public address fails the whole lookup."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not is_public(ipaddress.ip_address(result["host"])):
                raise _RefusedTargetError(REFUSED_ADDRESS)
        return results

    async def close(self) -> None:
        await self._inner.close()


class AiohttpWebhookSender(WebhookSender):
    """POSTs with a total timeout, no redirects, and the guard on every connection.

    Its HTTP session is made inside the running loop on first use; ``close`` it
    at shutdown.
    """

    def __init__(self, guard: PublicTargetGuard, *, timeout_seconds: float = 10.0) -> None:
        self._guard = guard
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector_args: dict[str, Any] = {"limit": 100, "ttl_dns_cache": None}
            if not self._guard.allow_private:
                connector_args["resolver"] = _PublicOnlyResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**connector_args),
                timeout=self._timeout,
                headers={"User-Agent": "identity-webhooks"},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        host = urlsplit(url).hostname or ""
        literal = _literal(host)
        # aiohttp connects to an IP literal without asking the resolver: checked here.
        if literal is not None and not self._guard.allow_private and not is_public(literal):
            raise WebhookDeliveryError(f"refused target: {REFUSED_ADDRESS}")
        try:
            async with self._client().post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return response.status
        except TimeoutError:
            raise WebhookDeliveryError("timed out") from None
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, _RefusedTargetError):
                raise WebhookDeliveryError(f"refused target: {REFUSED_ADDRESS}") from None
            raise WebhookDeliveryError("could not connect") from None
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise WebhookDeliveryError(f"request failed ({type(error).__name__})") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
