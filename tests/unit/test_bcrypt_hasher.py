import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest

from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor

ROUNDS = 4


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = make_hasher_executor(2)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def hasher(executor: ThreadPoolExecutor) -> BcryptSha256Hasher:
    return BcryptSha256Hasher(ROUNDS, executor)


async def test_round_trip(hasher: BcryptSha256Hasher) -> None:
    hashed = await hasher.hash("correct horse battery staple")
    assert hashed.startswith("bcrypt_sha256$$2b$04$")
    assert "correct horse" not in hashed
    assert await hasher.verify("correct horse battery staple", hashed)


async def test_wrong_password_does_not_verify(hasher: BcryptSha256Hasher) -> None:
    hashed = await hasher.hash("correct horse battery staple")
    assert not await hasher.verify("correct horse battery stapler", hashed)
    assert not await hasher.verify("", hashed)


async def test_same_password_gets_a_new_salt(hasher: BcryptSha256Hasher) -> None:
    assert await hasher.hash("same") != await hasher.hash("same")


async def test_long_password_works_and_differs_from_its_72_byte_prefix(
    hasher: BcryptSha256Hasher,
) -> None:
    password = "\N{GRINNING FACE}" * 100
    prefix = password.encode("utf-8")[:72].decode("utf-8")
    hashed = await hasher.hash(password)
    assert await hasher.verify(password, hashed)
    assert not await hasher.verify(prefix, hashed)


async def test_lone_surrogate_does_not_crash(hasher: BcryptSha256Hasher) -> None:
    hashed = await hasher.hash("abc\ud800")
    assert await hasher.verify("abc\ud800", hashed)
    assert not await hasher.verify("abc", hashed)


async def test_needs_rehash_when_rounds_change(executor: ThreadPoolExecutor) -> None:
    hashed = await BcryptSha256Hasher(ROUNDS, executor).hash("pw")
    assert not BcryptSha256Hasher(ROUNDS, executor).needs_rehash(hashed)
    assert BcryptSha256Hasher(ROUNDS + 1, executor).needs_rehash(hashed)
    assert BcryptSha256Hasher(ROUNDS, executor).needs_rehash("md5$abc")


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "bcrypt_sha256$",
        "bcrypt_sha256$garbage",
        "bcrypt_sha256$$2b$04$tooshort",
        "bcrypt_sha256$$2b$04$\N{SNOWMAN}" * 3,
        "pbkdf2_sha256$600000$salt$hash",
    ],
)
async def test_malformed_hash_is_false(hasher: BcryptSha256Hasher, malformed: str) -> None:
    assert await hasher.verify("pw", malformed) is False


async def test_raw_bcrypt_hash_is_an_imported_hash_checked_then_replaced(
    hasher: BcryptSha256Hasher,
) -> None:
    # Another system's plain bcrypt (API.md §18): the password itself, not its SHA-256.
    raw = bcrypt.hashpw(b"pw", bcrypt.gensalt(ROUNDS)).decode()
    assert await hasher.verify("pw", raw) is True
    assert await hasher.verify("other", raw) is False
    assert hasher.needs_rehash(raw)


async def test_dummy_verify_hashes_once_with_the_same_rounds(
    hasher: BcryptSha256Hasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[bytes] = []
    checked: list[bytes] = []
    real_hashpw, real_checkpw = bcrypt.hashpw, bcrypt.checkpw

    def counting_hashpw(password: bytes, salt: bytes) -> bytes:
        made.append(salt)
        return real_hashpw(password, salt)

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "hashpw", counting_hashpw)
    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)

    await asyncio.gather(*(hasher.dummy_verify("guess") for _ in range(5)))

    assert len(made) == 1
    assert len(checked) == 5
    assert len(set(checked)) == 1
    assert checked[0].startswith(b"$2b$04$")


async def test_event_loop_keeps_ticking_while_hashing() -> None:
    rounds = 10
    # Times are the loop thread's own CPU time: a busy machine may pause the thread
    # (wall time), but only a hash run on the loop spends the loop thread's CPU.
    started = time.thread_time()
    bcrypt.hashpw(b"x", bcrypt.gensalt(rounds))
    one_hash = time.thread_time() - started

    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.thread_time()
            gaps.append(now - last)
            last = now

    with make_hasher_executor(1) as pool:
        hasher = BcryptSha256Hasher(rounds, pool)
        task = asyncio.create_task(ticker())
        hashes = await asyncio.gather(*(hasher.hash(f"pw{i}") for i in range(3)))
        done.set()
        await task

    assert len(hashes) == 3
    # Hashing on the loop would spend a whole hash of the loop thread's CPU in one gap.
    assert len(gaps) > 10
    assert max(gaps) < one_hash / 2, (max(gaps), one_hash)


def test_rounds_out_of_range_are_refused(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(ValueError, match="rounds"):
        BcryptSha256Hasher(3, executor)
    with pytest.raises(ValueError, match="rounds"):
        BcryptSha256Hasher(32, executor)


def test_executor_is_bounded_by_cpu_count() -> None:
    with make_hasher_executor() as pool:
        assert pool._max_workers == (os.cpu_count() or 1)
    with make_hasher_executor(3) as pool:
        assert pool._max_workers == 3
    with pytest.raises(ValueError):
        make_hasher_executor(0)
