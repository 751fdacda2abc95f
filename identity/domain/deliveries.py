"""What is kept of a failed delivery (a queued mail, a webhook call) for the operator."""

from __future__ import annotations

# The width of ``last_error`` in both queues: a longer reason is cut, never refused.
MAX_ERROR_LENGTH = 500


def error_note(reason: str) -> str:
    """The failure reason as stored: at most ``MAX_ERROR_LENGTH`` characters."""
    return reason[:MAX_ERROR_LENGTH]
