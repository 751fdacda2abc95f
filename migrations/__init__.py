"""The Alembic scripts; shipped in the wheel as ``identity.migrations``."""
