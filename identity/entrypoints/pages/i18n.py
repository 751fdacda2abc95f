"""Languages of the hosted pages: gettext catalogues read with Babel.

The ``.po`` files ship in the package and are compiled in memory the first
time a language is used, so a clean clone and the wheel work alike with no
build step. English is the source language: its catalogue is the msgids
themselves, and a message missing from another catalogue falls back to it.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from identity.domain.branding import LOCALES

DEFAULT_LOCALE = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
MAX_ACCEPT_LANGUAGE = 512


def supported(tag: str | None) -> str | None:
    """The supported locale a language tag asks for (``de-AT`` -> ``de``), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else None


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an ``Accept-Language`` header (RFC 9110 weights)."""
    if not header:
        return None
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = item.partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        locale = supported(tag)
        if locale is not None and weight > 0:
            choices.append((-weight, position, locale))
    return min(choices)[2] if choices else None


def negotiate(query: str | None, tenant_default: str | None, accept_language: str | None) -> str:
    """``?lang=``, else the tenant's ``default_locale``, else ``Accept-Language``, else en."""
    return (
        supported(query)
        or supported(tenant_default)
        or from_accept_language(accept_language)
        or DEFAULT_LOCALE
    )


def catalogue_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"


@functools.cache
def translations(locale: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``locale`` (English: the msgids as they are)."""
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return gettext.NullTranslations()
    with catalogue_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)
