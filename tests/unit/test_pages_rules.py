"""Rules of the hosted pages that need no server: catalogues, languages, return_to,
branding contrast, CSRF tokens."""

from __future__ import annotations

import pytest

from identity.domain.branding import (
    AA_CONTRAST,
    BRANDING_SETTINGS,
    Branding,
    contrast,
    text_color_on,
)
from identity.entrypoints.pages import i18n
from identity.entrypoints.pages.catalogue import extract
from identity.entrypoints.pages.security import CsrfTokens, safe_return_to


def test_every_language_translates_every_message_the_pages_use() -> None:
    used = {message.id for message in extract() if message.id}
    assert len(used) > 50
    for locale in i18n.LOCALES:
        if locale == i18n.DEFAULT_LOCALE:
            continue
        translations = i18n.translations(locale)
        missing = []
        for msgid in used:
            if isinstance(msgid, tuple):
                if translations.ngettext(msgid[0], msgid[1], 2) == msgid[1]:
                    missing.append(msgid[0])
            elif translations.gettext(msgid) == msgid and msgid not in ("Code",):
                missing.append(msgid)
        assert missing == [], f"{locale} lacks {missing}"


def test_a_missing_translation_falls_back_to_english() -> None:
    assert i18n.translations("de").gettext("no such message") == "no such message"
    assert i18n.translations("de").gettext("Sign in") == "Anmelden"


@pytest.mark.parametrize(
    ("query", "tenant", "accept", "expected"),
    [
        ("de", "en", "en", "de"),
        (None, "de", "en", "de"),
        ("xx", None, "de-AT,en;q=0.5", "de"),
        (None, None, "fr, en;q=0.1, de;q=0.5", "de"),
        (None, None, "fr", "en"),
        (None, None, "de;q=0", "en"),
        (None, None, None, "en"),
    ],
)
def test_language_negotiation(
    query: str | None, tenant: str | None, accept: str | None, expected: str
) -> None:
    assert i18n.negotiate(query, tenant, accept) == expected


ALLOW = ("https://app.example.com/done",)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/account", "/ui/account"),
        ("/ui/consent?x=1", "/ui/consent?x=1"),
        ("/oauth2/authorize?client_id=a", "/oauth2/authorize?client_id=a"),
        ("//evil.example/ui/", "/ui/account"),
        ("/\\evil.example", "/ui/account"),
        ("/admin/users", "/ui/account"),
        ("/ui/../admin", "/ui/account"),
        ("/ui/%2e%2e/admin", "/ui/account"),
        ("https://evil.example/", "/ui/account"),
        ("https://app.example.com/done/x", "https://app.example.com/done/x"),
        ("https://app.example.com.evil.example/done", "/ui/account"),
        ("javascript:alert(1)", "/ui/account"),
        ("", "/ui/account"),
        (None, "/ui/account"),
    ],
)
def test_return_to(target: str | None, expected: str) -> None:
    assert safe_return_to(target, ALLOW) == expected


@pytest.mark.parametrize(
    "color", ["#000000", "#ffffff", "#1f5fbf", "#ffcc00", "#777777", "#7f7f7f"]
)
def test_text_on_the_primary_colour_meets_aa(color: str) -> None:
    assert contrast(color, text_color_on(color)) >= AA_CONTRAST


def test_branding_ignores_invalid_values() -> None:
    branding = Branding.of(
        {"primary_color": "red", "logo_url": "http://x.example/l.png", "display_name": "Acme"}
    )
    assert branding.primary_color == "#1f5fbf" and branding.logo_url is None
    assert branding.display_name == "Acme"


def test_csrf_token_is_bound_to_the_browser_and_its_session() -> None:
    tokens = CsrfTokens("k" * 40)
    token = tokens.token("seed-one-seed-one-seed", "default", None)
    assert tokens.check(token, "seed-one-seed-one-seed", "default", None)
    assert not tokens.check(token, "seed-two-seed-two-seed", "default", None)
    assert not tokens.check(token, "seed-one-seed-one-seed", "other", None)
    assert not tokens.check(token, "seed-one-seed-one-seed", "default", "signed-in")
    assert not tokens.check(token, None, "default", None)
    assert not tokens.check("", "seed-one-seed-one-seed", "default", None)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil;script-src 'unsafe-inline'/x.png",
        "https://user@host.example/x.png",
        "http://host.example/x.png",
        "https://host.example/x y.png",
        'https://host.example/"x.png',
    ],
)
def test_a_logo_url_cannot_smuggle_a_csp_source(url: str) -> None:
    assert Branding.of({"logo_url": url}).logo_url is None
    with pytest.raises(ValueError, match="https"):
        BRANDING_SETTINGS["logo_url"](url)
