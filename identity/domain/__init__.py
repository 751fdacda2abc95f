"""Entities, value objects and invariants. Only the stdlib and attrs."""
