"""Which failures mean "the database is unavailable right now" (a 503, retry later).

asyncpg reports a server that is shutting down, starting up or out of
connection slots as plain ``PostgresError`` subclasses, which SQLAlchemy wraps
in its generic ``DBAPIError`` rather than ``OperationalError``: a type check
alone misses them. The SQLSTATE class says it: 08 connection exception,
53 insufficient resources (too many connections, out of memory or disk),
57 operator intervention (admin or crash shutdown, cannot connect now,
cancelled statement), 58 system error (I/O).
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})

_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    sa_exc.TimeoutError,  # no pooled connection free in time
    sa_exc.DisconnectionError,
    sa_exc.InterfaceError,
    sa_exc.OperationalError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes "connection is closed"
    asyncpg.InternalClientError,  # a connection the server ended meanwhile
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) says the database cannot serve now."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncio.CancelledError):
            return False
        if isinstance(current, _UNAVAILABLE_TYPES):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False
