"""A mailer that posts each message to an HTTP email API.

The API here is a typical one: ``POST {base_url}/v1/messages`` with a bearer
API key and a JSON body ``{from, to, subject, text, html}``, answering 2xx
when it accepted the message. Any real provider differs only in those
details.

It implements identity's ``Mailer`` port: ``send`` delivers one message or
raises ``MailDeliveryError``, temporary (the outbox retries later, with
backoff) for a timeout, a network error, 429 or a 5xx, permanent for any
other refusal. It never logs the message: a body carries a one-time code.
"""

from __future__ import annotations

import aiohttp

from identity.application.ports import MailDeliveryError, Mailer
from identity.domain.mail import EmailMessage


class HttpApiMailer(Mailer):
    def __init__(self, base_url: str, api_key: str, *, timeout_seconds: float = 10.0) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/messages"
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HttpApiMailer({self._url!r}, api_key=<redacted>)"

    async def send(self, message: EmailMessage) -> None:
        if self._http is None:
            # Made on first use, inside the server's running loop.
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        body = {
            "from": message.sender,
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
        }
        try:
            async with self._http.post(
                self._url, json=body, headers={"Authorization": f"Bearer {self._api_key}"}
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise MailDeliveryError(f"email API unreachable ({type(error).__name__})") from None
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise MailDeliveryError(f"email API answered {status}")
        raise MailDeliveryError(f"email API refused the message ({status})", permanent=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
