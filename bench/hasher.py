"""How many bcrypt_sha256 verifications per second the hasher alone sustains.

The ceiling for logins per second: run it with the server's rounds and
thread count, e.g. ``PYTHONPATH=. python bench/hasher.py --rounds 12 --threads 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="hasher pool size (default: CPUs)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time (default 5)")
    return parser.parse_args()


async def _run(rounds: int, threads: int, seconds: float) -> None:
    with make_hasher_executor(threads) as pool:
        hasher = BcryptSha256Hasher(rounds, pool)
        hashed = await hasher.hash("benchmark password")
        count = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                if not await hasher.verify("benchmark password", hashed):
                    raise RuntimeError("verification failed")
                count += 1

        # One more caller than threads keeps the pool saturated between calls.
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(threads + 1)))
        elapsed = time.perf_counter() - started

    rate = max(count, 1) / elapsed
    print(
        f"rounds={rounds} threads={threads} verifications={count} "
        f"elapsed={elapsed:.2f}s rate={rate:.1f}/s per_verify={1000 * threads / rate:.1f}ms"
    )


def main() -> None:
    args = _parse()
    asyncio.run(_run(args.rounds, args.threads, args.seconds))


if __name__ == "__main__":
    main()
