"""The most used passwords, from the list that ships with ``zxcvbn``."""

from __future__ import annotations

import functools
from typing import Final

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from identity.application.ports import CommonPasswords

DEFAULT_TOP_N: Final = 10_000


@functools.cache
def _top_passwords(top_n: int) -> frozenset[str]:
    # Cached per size: the container and the tests build it once per process.
    ranked: list[str] = list(FREQUENCY_LISTS["passwords"])
    return frozenset(p.casefold() for p in ranked[:top_n])


class ZxcvbnCommonPasswords(CommonPasswords):
    """The top ``top_n`` of zxcvbn's password frequency list (leak corpora, by rank).

    A maintained list rather than a hand-typed one; compared case-insensitively
    because "PassWord" is guessed as fast as "password".
    """

    def __init__(self, top_n: int = DEFAULT_TOP_N) -> None:
        if top_n < 1:
            raise ValueError("top_n must be at least 1")
        self._passwords = _top_passwords(top_n)

    def __len__(self) -> int:
        return len(self._passwords)

    def is_common(self, password: str) -> bool:
        return password.casefold() in self._passwords
