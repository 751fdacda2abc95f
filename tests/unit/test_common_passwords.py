import secrets

import pytest

from identity.adapters.common_passwords import ZxcvbnCommonPasswords


@pytest.fixture(scope="module")
def common() -> ZxcvbnCommonPasswords:
    return ZxcvbnCommonPasswords()


@pytest.mark.parametrize("password", ["password", "123456", "qwerty", "PassWord", "IloveYou"])
def test_well_known_passwords_are_common(common: ZxcvbnCommonPasswords, password: str) -> None:
    assert common.is_common(password)


def test_random_long_passphrase_is_not_common(common: ZxcvbnCommonPasswords) -> None:
    assert not common.is_common(f"violet-anchor-{secrets.token_urlsafe(16)}-tundra")


def test_default_is_the_top_ten_thousand(common: ZxcvbnCommonPasswords) -> None:
    # Case folding may merge a few entries; it must not lose many.
    assert 9_900 <= len(common) <= 10_000


def test_top_n_limits_the_list() -> None:
    small = ZxcvbnCommonPasswords(top_n=10)
    assert small.is_common("123456")
    assert not small.is_common("baseball")
    assert ZxcvbnCommonPasswords().is_common("baseball")
    # Rank 10_001 of the list: outside the default top 10_000.
    assert not ZxcvbnCommonPasswords().is_common("cathy1")
    with pytest.raises(ValueError):
        ZxcvbnCommonPasswords(top_n=0)
