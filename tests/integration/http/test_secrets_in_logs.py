"""No password, one-time code or token reaches any log, even at DEBUG for every logger."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from identity.entrypoints.logs import JsonFormatter, TextFormatter
from tests.integration.http.conftest import PASSWORD, Api, MakeApi, other_code

NEW_PASSWORD = "another secret passphrase"
RESET_PASSWORD = "a third secret passphrase"
# The test's own SMTP server logs the conversation it receives; it is not the service.
TEST_SMTP_SERVER_LOGGER = "mail.log"


class Everything(logging.Handler):
    """Keeps every record that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def everything() -> Iterator[Everything]:
    root = logging.getLogger()
    handler = Everything()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Loggers given a level of their own (e.g. by a library) are opened up as well.
    quiet = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG
    }
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    root.setLevel(level)
    root.removeHandler(handler)


def renderings(record: logging.LogRecord) -> list[str]:
    """Every way the record can be written: message, both formatters, each extra field."""
    texts = [record.getMessage(), JsonFormatter().format(record), TextFormatter().format(record)]
    texts.extend(repr(value) for value in vars(record).values())
    texts.extend(str(arg) for arg in (record.args or ()))
    return texts


async def run_every_flow(api: Api) -> list[str]:
    """Register, verify, log in, refresh, use, change and reset the password, log out.

    Returns every secret that passed through the service."""
    email = "secretive@example.com"
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, RESET_PASSWORD]

    def keep(tokens: dict[str, Any]) -> dict[str, Any]:
        secrets.extend([tokens["access_token"], tokens["refresh_token"]])
        return tokens

    response = await api.post(
        "/auth/register", {"email": email, "password": PASSWORD, "full_name": "Secretive"}
    )
    assert response.status == 202
    code = await api.next_code(email)
    secrets.append(code)
    wrong = await api.post(
        "/auth/verify-otp",
        {"email": email, "otp_code": other_code(code), "purpose": "verification"},
    )
    assert wrong.status == 400
    first = keep(await api.verify(email, code, "verification"))

    second = keep(await api.login(email))
    bad_login = await api.post("/auth/login", {"email": email, "password": PASSWORD + "x"})
    assert bad_login.status == 401
    secrets.append(PASSWORD + "x")
    rotated = await api.post("/auth/refresh-token", {"refresh_token": second["refresh_token"]})
    assert rotated.status == 200
    third = keep(await rotated.json())
    assert (await api.me(third["access_token"])).status == 200
    assert (await api.get("/auth/sessions", token=third["access_token"])).status == 200

    changed = await api.post(
        "/auth/change-password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=third["access_token"],
    )
    assert changed.status == 200
    await api.next_mail(email)  # the notice

    login_code = await api.request_code(email, "login")
    secrets.append(login_code)
    keep(await api.verify(email, login_code, "login"))

    reset_code = await api.request_code(email, "password_reset")
    secrets.append(reset_code)
    reset = await api.post(
        "/auth/reset-password",
        {"email": email, "otp_code": reset_code, "new_password": RESET_PASSWORD},
    )
    assert reset.status == 200
    await api.next_mail(email)  # the notice, so every mail has gone out

    last = keep(await api.login(email, RESET_PASSWORD))
    logout = await api.post("/auth/logout", {"refresh_token": last["refresh_token"]})
    assert logout.status == 200
    replay = await api.post("/auth/refresh-token", {"refresh_token": first["refresh_token"]})
    assert replay.status == 401

    mfa = keep(await api.login(email, RESET_PASSWORD))
    enrolled = await (await api.post("/auth/mfa/totp/enroll", token=mfa["access_token"])).json()
    totp_code = pyotp.TOTP(enrolled["secret"]).now()
    secrets.extend([enrolled["secret"], enrolled["otpauth_uri"], totp_code])
    confirmed = await api.post(
        "/auth/mfa/totp/confirm", {"code": totp_code}, token=mfa["access_token"]
    )
    assert confirmed.status == 200
    recovery_codes = (await confirmed.json())["recovery_codes"]
    secrets.extend(recovery_codes)
    required = await (
        await api.post("/auth/login", {"email": email, "password": RESET_PASSWORD})
    ).json()
    secrets.append(required["mfa_token"])
    wrong = await api.post(
        "/auth/mfa/verify", {"mfa_token": required["mfa_token"], "code": other_code(totp_code)}
    )
    assert wrong.status == 400
    verified = await api.post(
        "/auth/mfa/verify",
        {"mfa_token": required["mfa_token"], "recovery_code": recovery_codes[0]},
    )
    assert verified.status == 200
    keep(await verified.json())
    return secrets


async def test_no_secret_reaches_any_log(make_api: MakeApi, everything: Everything) -> None:
    api = await make_api(LOG_LEVEL="debug")

    secrets = await run_every_flow(api)

    records = [r for r in everything.records if r.name != TEST_SMTP_SERVER_LOGGER]
    assert any(r.name == "identity.access" for r in records), "the access log was not captured"
    assert len(secrets) >= 30
    # A 6-digit code counts only standing alone: timestamps and thread ids are long numbers.
    patterns = [
        re.compile(rf"(?<!\d){s}(?!\d)") if s.isdigit() else re.compile(re.escape(s))
        for s in secrets
    ]
    for record in records:
        for text in renderings(record):
            for pattern in patterns:
                assert not pattern.search(text), f"a secret reached the log via {record.name}"
