"""The post-login redirect allowlist refuses everything an open redirect needs."""

from __future__ import annotations

import pytest

from identity.application.redirects import is_allowed_redirect, is_valid_allowlist_entry

ALLOWLIST = [
    "https://app.example.com/app",
    "https://admin.example.com/",
    "http://localhost:3000",
]


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/app",
        "https://app.example.com/app/",
        "https://app.example.com/app/welcome?tab=1",
        "https://APP.Example.COM/app/x",
        "HTTPS://app.example.com/app",
        "https://app.example.com:443/app",
        "https://admin.example.com",
        "https://admin.example.com/anything/below",
        "http://localhost:3000/",
        "http://localhost:3000/callback",
    ],
)
def test_allowed(url: str) -> None:
    assert is_allowed_redirect(url, ALLOWLIST)


@pytest.mark.parametrize(
    "url",
    [
        # other hosts, look-alikes and host smuggling
        "https://evil.test/app",
        "https://app.example.com.evil.test/app",
        "https://evil.test/https://app.example.com/app",
        "https://app.example.com@evil.test/app",
        "https://user:pw@app.example.com/app",
        "https://app.example.com\\@evil.test/app",
        "https:\\\\evil.test/app",
        "https://app.example.com\\evil.test/app",
        "//evil.example",
        "//app.example.com/app",
        "///evil.example",
        "https:app.example.com/app",
        "https:/app.example.com/app",
        # wrong scheme or port
        "javascript:alert(1)",
        "JavaScript://app.example.com/app%0Aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://app.example.com/app",
        "http://app.example.com/app",
        "https://app.example.com:8443/app",
        "http://localhost/",
        "http://localhost:3001/",
        "https://localhost:3000/",
        "https://app.example.com:99999/app",
        # path outside the allowed prefix
        "https://app.example.com/",
        "https://app.example.com/application",
        "https://app.example.com/ap",
        "https://app.example.com/app/../admin",
        "https://app.example.com/app/%2e%2e/admin",
        "https://app.example.com/app/./x",
        # control characters, whitespace, fragments, relative URLs
        "https://app.example.com/app\n",
        "https://app.example.com/app\r\nLocation: https://evil.test",
        "https://app.example.com/app\t",
        "\x00https://app.example.com/app",
        " https://app.example.com/app",
        "https://app.example.com/app x",
        "https://app.example.com/app#frag",
        "https://app.example.com/app#",
        "https://app.\u0435xample.com/app",  # Cyrillic "ie" look-alike
        "/app",
        "app",
        "",
    ],
)
def test_refused(url: str) -> None:
    assert not is_allowed_redirect(url, ALLOWLIST)


def test_nothing_is_allowed_with_an_empty_allowlist() -> None:
    assert not is_allowed_redirect("https://app.example.com/app", [])


def test_a_malformed_allowlist_entry_allows_nothing() -> None:
    assert not is_allowed_redirect("https://app.example.com/app", ["app.example.com", "//x"])


def test_an_entry_with_a_trailing_slash_is_a_directory() -> None:
    allowlist = ["https://app.example.com/app/"]

    assert is_allowed_redirect("https://app.example.com/app/x", allowlist)
    assert not is_allowed_redirect("https://app.example.com/app", allowlist)
    assert not is_allowed_redirect("https://app.example.com/appx", allowlist)


def test_an_explicit_default_port_in_the_entry_matches_an_implicit_one() -> None:
    assert is_allowed_redirect("https://app.example.com/", ["https://app.example.com:443"])


def test_an_ipv6_host() -> None:
    assert is_allowed_redirect("http://[::1]:8080/cb", ["http://[::1]:8080/"])
    assert not is_allowed_redirect("http://[::1]:8081/cb", ["http://[::1]:8080/"])


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ("https://app.example.com/app", True),
        ("http://localhost:3000", True),
        ("app.example.com", False),
        ("https://app.example.com/app?x=1", False),
        ("https://u@app.example.com/", False),
        ("javascript:alert(1)", False),
    ],
)
def test_allowlist_entry_validation(entry: str, valid: bool) -> None:
    assert is_valid_allowlist_entry(entry) is valid
