"""Bounds of what a request may carry."""

MAX_BODY_BYTES = 64 * 1024
