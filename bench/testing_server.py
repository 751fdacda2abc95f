"""How fast an in-memory ``IdentityTestServer`` starts, and whether 100 starts
and stops leak anything.

    .venv/bin/python bench/testing_server.py [--rounds 100]

Prints the start time (the first start, with cold caches, then the median
and the slowest of the rest), the stop time, and the tasks, threads and open
file descriptors (sockets included) before and after the loop. Exits 1 on a
leak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time

from identity.testing import IdentityTestServer


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


async def main(rounds: int) -> int:
    started = time.perf_counter()
    async with IdentityTestServer():
        first = time.perf_counter() - started
    tasks, threads, fds = len(asyncio.all_tasks()), threading.active_count(), descriptors()
    starts, stops = [], []
    loop_started = time.perf_counter()
    for _ in range(rounds):
        began = time.perf_counter()
        server = IdentityTestServer()
        await server.__aenter__()
        up = time.perf_counter()
        await server.__aexit__(None, None, None)
        starts.append(up - began)
        stops.append(time.perf_counter() - up)
    total = time.perf_counter() - loop_started
    after = len(asyncio.all_tasks()), threading.active_count(), descriptors()
    print(f"first start (cold caches): {first * 1000:.0f} ms")
    print(
        f"start over {rounds} rounds: median {statistics.median(starts) * 1000:.1f} ms, "
        f"slowest {max(starts) * 1000:.1f} ms; stop median "
        f"{statistics.median(stops) * 1000:.1f} ms; whole loop {total:.1f} s"
    )
    print(f"tasks {tasks} -> {after[0]}, threads {threads} -> {after[1]}, fds {fds} -> {after[2]}")
    leaked = after != (tasks, threads, fds)
    print("LEAK" if leaked else "no leak")
    return 1 if leaked else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    sys.exit(asyncio.run(main(parser.parse_args().rounds)))
