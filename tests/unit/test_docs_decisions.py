"""docs/decisions.md names, for each rule, a file of the repository that holds it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rules(text: str) -> list[str]:
    return [part for part in re.split(r"\n(?=- \*\*)", text)[1:]]


def paths_named(rule: str) -> list[str]:
    return re.findall(r"`((?:identity|verifier|migrations|tests|scripts|docs)/[\w./-]*)`", rule)


def test_every_rule_names_a_file_that_exists() -> None:
    found = rules((ROOT / "docs" / "decisions.md").read_text())
    assert len(found) > 50
    for rule in found:
        named = paths_named(rule)
        title = rule.splitlines()[0]
        assert named, f"no file named by {title}"
        for path in named:
            assert (ROOT / path).exists(), f"{path} (named by {title}) does not exist"


def test_a_rule_without_a_file_is_caught() -> None:
    assert paths_named("- **A rule.** Nothing says where.") == []
