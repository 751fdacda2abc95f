import pytest

from identity.domain.ratelimits import RateLimit, parse_rate_limit


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [
        ("100/minute", 100, 60),
        ("5/min", 5, 60),
        ("10/15m", 10, 900),
        ("5/hour", 5, 3600),
        ("3/h", 3, 3600),
        ("20/s", 20, 1),
        ("7/second", 7, 1),
        ("2/day", 2, 86400),
        ("10/30s", 10, 30),
        (" 4 / 2 Minutes ", 4, 120),
        ("10/60", 10, 60),
    ],
)
def test_parses_count_and_period(text: str, count: int, seconds: float) -> None:
    assert parse_rate_limit(text) == RateLimit(count=count, period_seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/minute", "count must be at least 1"),
        ("5/0s", "period must be positive"),
        ("5/fortnight", "unknown unit 'fortnight'"),
        ("five/minute", "expected COUNT/PERIOD"),
        ("", "expected COUNT/PERIOD"),
        ("5", "expected COUNT/PERIOD"),
        ("5/", "expected COUNT/PERIOD"),
        ("-5/minute", "expected COUNT/PERIOD"),
        ("5/1.5m", "expected COUNT/PERIOD"),
        ("5/minute extra", "expected COUNT/PERIOD"),
    ],
)
def test_rejects_invalid_text_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate_limit(text)
