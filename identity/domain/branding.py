"""A tenant's branding of the hosted pages (section 16), read from its settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

BRANDING_KEYS = (
    "display_name",
    "logo_url",
    "primary_color",
    "support_email",
    "terms_url",
    "privacy_url",
    "default_locale",
)
DEFAULT_PRIMARY = "#1f5fbf"
# The languages of the hosted pages and of the mails (catalogues in entrypoints/pages/locale).
LOCALES = ("en", "de")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
AA_CONTRAST = 4.5


def is_color(value: str) -> bool:
    return bool(_COLOR.match(value))


_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def is_https_url(value: str) -> bool:
    """An https URL whose host is a plain name (it goes into the pages' CSP as a source)."""
    if not value.isascii() or not value.isprintable() or any(c in value for c in " \\\"'<>"):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(_HOST.match(parts.netloc))


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(first: str, second: str) -> float:
    a, b = sorted((luminance(first), luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def text_color_on(background: str) -> str:
    """White or black, whichever reads better on ``background`` (one of them
    always reaches WCAG AA's 4.5:1)."""
    white, dark = "#ffffff", "#000000"
    return white if contrast(background, white) >= contrast(background, dark) else dark


@attrs.frozen
class Branding:
    display_name: str | None = None
    logo_url: str | None = None
    primary_color: str = DEFAULT_PRIMARY
    support_email: str | None = None
    terms_url: str | None = None
    privacy_url: str | None = None
    default_locale: str | None = None

    @property
    def on_primary(self) -> str:
        return text_color_on(self.primary_color)

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Branding:
        """The branding in a tenant's settings; a value that is not valid is ignored."""

        def text(key: str) -> str | None:
            value = settings.get(key)
            return value if isinstance(value, str) and value.strip() else None

        def url(key: str) -> str | None:
            value = text(key)
            return value if value is not None and is_https_url(value) else None

        color = text("primary_color")
        return cls(
            display_name=text("display_name"),
            logo_url=url("logo_url"),
            primary_color=color.lower() if color and is_color(color) else DEFAULT_PRIMARY,
            support_email=text("support_email"),
            terms_url=url("terms_url"),
            privacy_url=url("privacy_url"),
            default_locale=text("default_locale"),
        )


def _name(value: object) -> str:
    text = str(value).strip()
    if not text or len(text) > 100:
        raise ValueError("must be 1-100 characters")
    return text


def _https(value: object) -> str:
    text = str(value).strip()
    if len(text) > 2048 or not is_https_url(text):
        raise ValueError("must be an https:// URL")
    return text


def _color(value: object) -> str:
    text = str(value).strip()
    if not is_color(text):
        raise ValueError("must be a colour like #1f5fbf")
    return text.lower()


def _address(value: object) -> str:
    text = str(value).strip()
    local, at, domain = text.partition("@")
    spaced = any(c.isspace() for c in text)
    if not at or not local or "." not in domain or len(text) > 320 or spaced:
        raise ValueError("must be an email address")
    return text


def _locale(value: object) -> str:
    text = str(value).strip().lower()
    if text not in LOCALES:
        raise ValueError(f"must be one of: {', '.join(LOCALES)}")
    return text


# Tenant setting -> parser (``identity tenants set``, ``PATCH /admin/tenants/{slug}``).
BRANDING_SETTINGS = {
    "display_name": _name,
    "logo_url": _https,
    "primary_color": _color,
    "support_email": _address,
    "terms_url": _https,
    "privacy_url": _https,
    "default_locale": _locale,
}
