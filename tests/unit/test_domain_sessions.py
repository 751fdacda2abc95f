import uuid
from datetime import UTC, datetime, timedelta

from identity.domain.sessions import Presented, Session

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=10)
TTL = timedelta(days=30)


def _session() -> Session:
    return Session(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        created_at=T0,
        last_used_at=T0,
        refresh_jti="jti-1",
        refresh_issued_at=T0,
        expires_at=T0 + TTL,
    )


def test_the_live_token_is_current() -> None:
    assert _session().classify("jti-1", T0, GRACE) is Presented.CURRENT


def test_an_unknown_token_of_a_live_session_is_a_reuse() -> None:
    assert _session().classify("jti-never-issued", T0, GRACE) is Presented.REUSED


def test_rotate_spends_the_token_and_extends_the_session() -> None:
    session = _session()
    later = T0 + timedelta(hours=1)
    session.rotate("jti-2", later, TTL)
    assert session.refresh_jti == "jti-2"
    assert session.previous_refresh_jti == "jti-1"
    assert session.rotated_at == later
    assert session.refresh_issued_at == later
    assert session.last_used_at == later
    assert session.expires_at == later + TTL
    assert session.classify("jti-2", later, GRACE) is Presented.CURRENT


def test_the_spent_token_is_in_grace_up_to_the_window_then_reused() -> None:
    session = _session()
    session.rotate("jti-2", T0, TTL)
    assert session.classify("jti-1", T0, GRACE) is Presented.IN_GRACE
    assert session.classify("jti-1", T0 + GRACE, GRACE) is Presented.IN_GRACE
    assert session.classify("jti-1", T0 + GRACE + timedelta(seconds=1), GRACE) is (Presented.REUSED)


def test_a_token_two_rotations_old_is_reused_even_within_grace() -> None:
    session = _session()
    session.rotate("jti-2", T0, TTL)
    session.rotate("jti-3", T0 + timedelta(seconds=1), TTL)
    assert session.classify("jti-2", T0 + timedelta(seconds=2), GRACE) is Presented.IN_GRACE
    assert session.classify("jti-1", T0 + timedelta(seconds=2), GRACE) is Presented.REUSED


def test_a_revoked_session_is_dead_for_every_token() -> None:
    session = _session()
    session.rotate("jti-2", T0, TTL)
    session.revoke(T0, "logout")
    for jti in ("jti-1", "jti-2", "other"):
        assert session.classify(jti, T0, GRACE) is Presented.DEAD
    assert not session.is_active(T0)


def test_an_expired_session_is_dead() -> None:
    session = _session()
    assert session.is_active(T0 + TTL - timedelta(seconds=1))
    assert not session.is_active(T0 + TTL)
    assert session.classify("jti-1", T0 + TTL, GRACE) is Presented.DEAD


def test_revoke_keeps_the_first_time_and_reason() -> None:
    session = _session()
    session.revoke(T0, "logout")
    session.revoke(T0 + timedelta(minutes=5), "logout_all")
    assert session.revoked_at == T0
    assert session.revoked_reason == "logout"
