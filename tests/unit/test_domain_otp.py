import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.errors import OtpInvalidError
from identity.domain.otp import RESEND_INTERVAL, OtpChallenge, OtpPurpose

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RIGHT = "digest-of-the-right-code"
WRONG = "digest-of-a-wrong-code"


def _challenge(max_attempts: int = 5, ttl: timedelta = timedelta(minutes=10)) -> OtpChallenge:
    return OtpChallenge(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        email_key="ada@example.com",
        purpose=OtpPurpose.LOGIN,
        code_digest=RIGHT,
        created_at=T0,
        expires_at=T0 + ttl,
        max_attempts=max_attempts,
    )


def test_the_right_code_is_spent_once() -> None:
    challenge = _challenge()
    challenge.check(RIGHT, T0 + timedelta(minutes=1))
    assert challenge.consumed_at == T0 + timedelta(minutes=1)
    assert not challenge.is_usable(T0 + timedelta(minutes=1))
    with pytest.raises(OtpInvalidError):
        challenge.check(RIGHT, T0 + timedelta(minutes=2))
    assert challenge.consumed_at == T0 + timedelta(minutes=1)


def test_a_wrong_code_counts_an_attempt() -> None:
    challenge = _challenge()
    with pytest.raises(OtpInvalidError):
        challenge.check(WRONG, T0)
    assert challenge.attempts == 1
    assert challenge.consumed_at is None
    challenge.check(RIGHT, T0)
    assert challenge.consumed_at == T0


def test_five_wrong_codes_kill_it_even_for_the_right_code() -> None:
    challenge = _challenge(max_attempts=5)
    for _ in range(5):
        with pytest.raises(OtpInvalidError):
            challenge.check(WRONG, T0)
    assert challenge.attempts == 5
    assert not challenge.is_usable(T0)
    with pytest.raises(OtpInvalidError):
        challenge.check(RIGHT, T0)
    assert challenge.consumed_at is None
    # A dead code counts no more attempts.
    assert challenge.attempts == 5


def test_four_wrong_codes_still_leave_the_right_one_usable() -> None:
    challenge = _challenge(max_attempts=5)
    for _ in range(4):
        with pytest.raises(OtpInvalidError):
            challenge.check(WRONG, T0)
    challenge.check(RIGHT, T0)
    assert challenge.consumed_at == T0


def test_the_code_expires_at_its_deadline() -> None:
    challenge = _challenge(ttl=timedelta(minutes=10))
    assert challenge.is_usable(T0 + timedelta(minutes=10) - timedelta(seconds=1))
    assert not challenge.is_usable(T0 + timedelta(minutes=10))
    with pytest.raises(OtpInvalidError):
        challenge.check(RIGHT, T0 + timedelta(minutes=10))
    assert challenge.consumed_at is None
    assert challenge.attempts == 0


def test_replacement_only_after_sixty_seconds() -> None:
    challenge = _challenge()
    assert RESEND_INTERVAL == timedelta(seconds=60)
    assert not challenge.may_be_replaced(T0)
    assert not challenge.may_be_replaced(T0 + timedelta(seconds=59))
    assert challenge.may_be_replaced(T0 + timedelta(seconds=60))


def test_the_digest_is_kept_out_of_repr() -> None:
    assert RIGHT not in repr(_challenge())
