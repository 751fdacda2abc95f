"""Security events and webhooks in the domain: no secret in an event, the retry schedule,
the rotation overlap."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.events import EventType, SecurityEvent, UnsafeEventDataError
from identity.domain.webhooks import RETRY_SCHEDULE, Webhook, next_attempt_after

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "key", ["password", "new_password", "otp_code", "refresh_token", "secret", "password_hash"]
)
def test_an_event_refuses_data_named_like_a_secret(key: str) -> None:
    with pytest.raises(UnsafeEventDataError):
        SecurityEvent.new(EventType.LOGIN_FAILED, uuid.uuid4(), NOW, **{key: "x"})


def test_an_event_keeps_its_details_and_cuts_a_long_user_agent() -> None:
    event = SecurityEvent.new(
        EventType.LOGIN_FAILED,
        uuid.uuid4(),
        NOW,
        user_agent="u" * 2000,
        reason="wrong_password",
        key_id="k",
        has_password=True,
    )
    assert event.data == {"reason": "wrong_password", "key_id": "k", "has_password": True}
    assert event.user_agent == "u" * 512


def test_retries_follow_the_schedule_then_stop() -> None:
    assert next_attempt_after(1, NOW) == NOW + timedelta(seconds=5)
    assert next_attempt_after(len(RETRY_SCHEDULE), NOW) == NOW + timedelta(hours=10)
    assert next_attempt_after(len(RETRY_SCHEDULE) + 1, NOW) is None


def test_a_rotated_secret_keeps_signing_for_a_day() -> None:
    hook = Webhook(uuid.uuid4(), uuid.uuid4(), "https://x.test/", frozenset(), "whsec_a", NOW)
    hook.rotate_secret("whsec_b", NOW)
    assert hook.signing_secrets(NOW + timedelta(hours=23)) == ["whsec_b", "whsec_a"]
    assert hook.signing_secrets(NOW + timedelta(hours=24)) == ["whsec_b"]
