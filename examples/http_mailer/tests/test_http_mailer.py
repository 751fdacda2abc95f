"""The HTTP-API mailer against a local fake of the API, alone and swapped into identity."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from fake_email_api import FakeEmailApi
from http_mailer import HttpApiMailer

from identity.application.ports import MailDeliveryError
from identity.domain.mail import EmailMessage
from identity.testing import IdentityTestServer

API_KEY = "key-for-the-fake-api"
MESSAGE = EmailMessage(
    to="ada@example.com",
    subject="Hello",
    text="Your code is 123456",
    html="<p>Your code is 123456</p>",
    sender="identity <no-reply@example.com>",
)


@pytest.fixture
async def api() -> AsyncIterator[FakeEmailApi]:
    async with FakeEmailApi(API_KEY) as running:
        yield running


@pytest.fixture
async def mailer(api: FakeEmailApi) -> AsyncIterator[HttpApiMailer]:
    mailer = HttpApiMailer(api.url, API_KEY)
    yield mailer
    await mailer.close()


async def test_a_message_is_posted_with_the_api_key(
    api: FakeEmailApi, mailer: HttpApiMailer
) -> None:
    await mailer.send(MESSAGE)
    assert api.received == [
        {
            "from": "identity <no-reply@example.com>",
            "to": "ada@example.com",
            "subject": "Hello",
            "text": "Your code is 123456",
            "html": "<p>Your code is 123456</p>",
        }
    ]


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (429, False), (422, True)])
async def test_a_refusal_is_a_delivery_error_retried_only_when_it_may_pass(
    api: FakeEmailApi, mailer: HttpApiMailer, status: int, permanent: bool
) -> None:
    api.answer_status = status
    with pytest.raises(MailDeliveryError) as raised:
        await mailer.send(MESSAGE)
    assert raised.value.permanent is permanent
    assert "123456" not in str(raised.value)


async def test_an_unreachable_api_is_a_temporary_error(api: FakeEmailApi) -> None:
    url = api.url
    await api.__aexit__(None, None, None)  # nothing listens there any more
    mailer = HttpApiMailer(url, API_KEY, timeout_seconds=2)
    try:
        with pytest.raises(MailDeliveryError) as raised:
            await mailer.send(MESSAGE)
        assert raised.value.permanent is False
    finally:
        await mailer.close()


async def test_swapped_into_identity_it_delivers_the_verification_code(
    api: FakeEmailApi, mailer: HttpApiMailer
) -> None:
    async with (
        IdentityTestServer(overrides={"mailer": mailer}) as server,
        aiohttp.ClientSession() as http,
    ):
        response = await http.post(
            f"{server.url}/auth/register",
            json={"email": "ada@example.com", "password": "correct horse 42"},
        )
        assert response.status == 202
        [posted] = await api.wait_for(1)
        code = server.mail.last_code("ada@example.com", "verification")
        assert code is not None and code in posted["text"]
        assert posted["to"] == "ada@example.com"
