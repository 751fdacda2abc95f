"""Storage on SQLAlchemy 2 Core (async): Postgres via asyncpg, SQLite via aiosqlite."""
