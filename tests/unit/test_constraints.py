"""constraints.txt pins every requirement the two pyproject files name, inside its range.

scripts/bootstrap installs with these pins, so a requirement added without a
pin would float to whatever is newest on the day of a fresh clone.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    found: list[Requirement] = []
    for path in (ROOT / "pyproject.toml", ROOT / "verifier" / "pyproject.toml"):
        project = tomllib.loads(path.read_text())["project"]
        texts = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            texts += extra
        found += [Requirement(text) for text in texts]
    return found


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()
    requirements = [r for r in _requirements() if r.marker is None or r.marker.evaluate()]
    assert requirements, "no requirement read: the test would pass vacuously"

    unpinned = [str(r) for r in requirements if canonicalize_name(r.name) not in pins]
    outside = [
        f"{r} (pinned {pins[canonicalize_name(r.name)]})"
        for r in requirements
        if canonicalize_name(r.name) in pins
        and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert unpinned == [], "add these to constraints.txt"
    assert outside == [], "constraints.txt pins these outside their range"
