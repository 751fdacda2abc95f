"""The sign-in page: server CPU per GET and the page's weight with its assets.

An in-memory ``IdentityTestServer`` runs in its own thread; a blocking
keep-alive client in the main thread GETs ``/ui/sign-in`` ``--requests``
times, and the server thread's own CPU clock (``pthread_getcpuclockid``) is
read before and after, so the client's work is not counted. The weight is
the HTML plus every stylesheet, script and image it names on the same origin.
Targets (section 16): at most 2 ms of server CPU per GET, under 100 KB.

    PYTHONPATH=. .venv/bin/python bench/pages.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import re
import threading
import time
from urllib.parse import urlsplit

from identity.testing import IdentityTestServer

ASSET = re.compile(r'<(?:link[^>]*href|script[^>]*src|img[^>]*src)="(/[^"]+)"')


def server_thread() -> threading.Thread:
    for thread in threading.enumerate():
        if thread.name == "identity-test-server":
            return thread
    raise SystemExit("the test server's thread was not found")


def get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path, headers={"Accept-Language": "en"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status}")
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    settings = {"RATE_LIMIT_GLOBAL": "100000000/minute", "LOG_LEVEL": "warning"}
    with IdentityTestServer(storage="memory", settings=settings).sync() as server:
        address = urlsplit(server.url)
        connection = http.client.HTTPConnection(address.hostname or "", address.port)
        html = get(connection, "/ui/sign-in")
        assets = sorted(set(ASSET.findall(html.decode())))
        weight = len(html) + sum(len(get(connection, path)) for path in assets)
        for _ in range(50):  # warm-up: templates compiled, caches filled
            get(connection, "/ui/sign-in")
        clock = time.pthread_getcpuclockid(server_thread().ident or 0)
        cpu_before, wall_before = time.clock_gettime(clock), time.perf_counter()
        for _ in range(args.requests):
            get(connection, "/ui/sign-in")
        cpu = time.clock_gettime(clock) - cpu_before
        wall = time.perf_counter() - wall_before
        connection.close()
    per_request_ms = cpu / args.requests * 1000
    print(f"GET /ui/sign-in: {per_request_ms:.3f} ms server CPU per request (target <= 2 ms)")
    print(f"                 {args.requests / wall:.0f} req/s from one client")
    print(f"page weight: {weight / 1024:.1f} KB with {len(assets)} assets (target < 100 KB)")
    ok = per_request_ms <= 2.0 and weight < 100 * 1024
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
