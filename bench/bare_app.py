"""The reference for ``bench/health.py``: a bare aiohttp app answering a constant JSON body.

.venv/bin/python bench/bare_app.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

BODY = b'{"status": "ok"}'


async def health(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_get("/health", health)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
