"""Which post-login redirect targets are allowed (open-redirect protection).

A target is allowed only when it is an absolute http(s) URL whose scheme, host
and port equal those of an allowlist entry and whose path lies under the
entry's path on a segment boundary. Anything odd is refused rather than
normalised: browsers and ``urllib`` disagree on odd URLs, and each
disagreement is a way to smuggle another host past the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str


def is_allowed_redirect(url: str, allowlist: Sequence[str]) -> bool:
    """True when ``url`` is a safe redirect target under one of ``allowlist``'s entries."""
    target = _parse(url, allow_query=True)
    if target is None:
        return False
    for entry in allowlist:
        allowed = _parse(entry, allow_query=False)
        if allowed is not None and _matches(target, allowed):
            return True
    return False


def is_valid_allowlist_entry(entry: str) -> bool:
    """True when ``entry`` can serve as an allowlist entry (for fail-fast settings)."""
    return _parse(entry, allow_query=False) is not None


def _matches(target: _Origin, allowed: _Origin) -> bool:
    if (target.scheme, target.host, target.port) != (allowed.scheme, allowed.host, allowed.port):
        return False
    prefix = allowed.path
    if target.path == prefix or prefix.endswith("/"):
        return target.path.startswith(prefix)
    # "/app" allows "/app" and "/app/x", never "/application".
    return target.path.startswith(prefix + "/")


def _parse(url: str, *, allow_query: bool) -> _Origin | None:
    if not url.isascii() or not url.isprintable() or any(c in url for c in " \\"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # bad port or malformed IPv6 literal
        return None
    if not _is_plain_absolute(parts):
        return None
    if parts.fragment or (parts.query and not allow_query) or url.endswith("#"):
        # The tokens are handed over in the fragment: the target must not bring its own.
        return None
    path = parts.path or "/"
    if _has_dot_segment(path):
        return None
    assert parts.hostname is not None  # _is_plain_absolute checked it
    return _Origin(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme], path)


def _is_plain_absolute(parts: SplitResult) -> bool:
    return (
        parts.scheme in _DEFAULT_PORTS
        and bool(parts.netloc)
        and "@" not in parts.netloc  # userinfo hides the real host from a reader
        and bool(parts.hostname)
        and (parts.path == "" or parts.path.startswith("/"))
    )


def _has_dot_segment(path: str) -> bool:
    # Browsers resolve "/app/../admin" (also percent-encoded) before sending it,
    # so a textual prefix match on such a path would be meaningless.
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))
