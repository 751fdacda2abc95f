"""Tenants: one deployment serves several applications."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

DEFAULT_TENANT_SLUG = "default"
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise ValueError("a tenant slug is 1-63 lower-case letters, digits and dashes")
    return slug


@attrs.define
class Tenant:
    id: UUID
    slug: str
    name: str
    created_at: datetime
    disabled: bool = False
    settings: dict[str, Any] = attrs.field(factory=dict)
