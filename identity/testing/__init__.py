"""identity in its users' own test suites.

``IdentityTestServer`` runs the real service in-process (storage in memory,
SQLite, Postgres or a testcontainers Postgres), captures its mail and lets
the test move its clock. The pytest plugin (``identity.testing.pytest_plugin``,
registered through the ``pytest11`` entry point) offers it as the
``identity_server`` and ``identity_user`` fixtures. Nothing here imports the
project's own ``tests/``.
"""

from identity.adapters.clock import ManualClock
from identity.testing.mail import CapturedMail, MailCapture
from identity.testing.server import IdentityTestServer, IdentityUser, SignedInUser
from identity.testing.storage import TestServerError
from identity.testing.sync import SyncIdentityTestServer

__all__ = [
    "CapturedMail",
    "IdentityTestServer",
    "IdentityUser",
    "MailCapture",
    "ManualClock",
    "SignedInUser",
    "SyncIdentityTestServer",
    "TestServerError",
]
