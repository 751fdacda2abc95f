"""identity: a self-hosted identity service."""

__version__ = "0.1.0"
