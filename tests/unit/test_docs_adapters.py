"""docs/adapters.md names only container providers that exist."""

from __future__ import annotations

import re
from pathlib import Path

from dependency_injector import providers

from identity.entrypoints.container import Container

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


def named_providers(text: str) -> set[str]:
    """Every container provider the text names: the table's provider column, the
    ``container.<name>`` uses, the "same works for" list and the test-server overrides."""
    names: set[str] = set()
    for row in re.findall(r"^\|([^|\n]*)\|([^|\n]*)\|", text, flags=re.MULTILINE):
        first = re.search(r"`(\w+)`", row[1])
        if first and row[0].strip() not in {"port", "---"}:
            names.add(first.group(1))
    names.update(re.findall(r"(?<![/\w])container\.(\w+)\b(?!\.py)", text))
    for sentence in re.findall(r"The same works for ([^.]*)", text):
        names.update(re.findall(r"`(\w+)`", sentence))
    names.update(re.findall(r"overrides=\{\"(\w+)\"", text))
    return names


def missing(text: str) -> set[str]:
    return {
        name
        for name in named_providers(text)
        if not isinstance(getattr(Container, name, None), providers.Provider)
    }


def test_every_provider_the_doc_names_exists() -> None:
    text = DOC.read_text()
    names = named_providers(text)
    assert {"mailer", "rate_limiter", "hasher", "identity_providers", "clock"} <= names
    assert missing(text) == set()


def test_a_provider_that_does_not_exist_is_caught() -> None:
    assert missing("| `IdentityProvider` | `google_provider` | Google |") == {"google_provider"}
    assert missing("The same works for `hasher` and `warp_drive`.") == {"warp_drive"}
