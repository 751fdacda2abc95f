"""The Dockerfile and compose.yaml at the root name only real settings and commands.

No container engine runs here, so what can go stale is checked instead: every
``IDENTITY_*`` name is a setting the service reads, every command the image or
compose runs is one the CLI has, and the health check polls ``/health``.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from identity.entrypoints.cli import _parser
from identity.entrypoints.settings import setting_names

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SETTINGS = set(setting_names())
VARIABLE = re.compile(r"\bIDENTITY_[A-Z0-9_]+\b")


def instruction(name: str) -> str:
    """The (last) Dockerfile instruction ``name``, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", joined, flags=re.MULTILINE)
    assert found, f"no {name} in the Dockerfile"
    return str(found[-1]).strip()


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), value
    return parsed


@pytest.mark.parametrize("text", [DOCKERFILE, COMPOSE_TEXT], ids=["Dockerfile", "compose.yaml"])
def test_every_identity_variable_is_a_real_setting(text: str) -> None:
    names = set(VARIABLE.findall(text))
    assert names, "no IDENTITY_* variable found"
    assert names <= SETTINGS, f"not settings: {sorted(names - SETTINGS)}"


def test_the_image_runs_the_identity_command_as_a_non_root_user() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form(instruction("ENTRYPOINT")) == ["identity"]
    assert "identity" in scripts
    _parser().parse_args(exec_form(instruction("CMD")))  # exits on an unknown command
    assert exec_form(instruction("CMD")) == ["serve"]
    user = instruction("USER")
    assert user not in {"root", "0"}
    assert re.search(rf"useradd\b.*\b{user}\b", DOCKERFILE)


def test_the_image_is_multi_stage_slim_and_checks_health() -> None:
    stages = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert len(stages) >= 2
    assert all("slim" in image for image in stages)
    check = instruction("HEALTHCHECK")
    assert "/health" in check
    assert "CMD" in check


def test_compose_runs_migrations_once_then_serves() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "redis", "mail", "migrate", "identity"} <= set(services)
    for name in ("migrate", "identity"):
        command = services[name]["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        _parser().parse_args(argv)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["identity"]["command"] == ["serve"]
    waits_for = services["identity"]["depends_on"]["migrate"]["condition"]
    assert waits_for == "service_completed_successfully"


def test_compose_gives_identity_what_production_needs() -> None:
    environment = COMPOSE["services"]["identity"]["environment"]
    assert environment["IDENTITY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert environment["IDENTITY_REDIS_URL"].startswith("redis://")
    assert environment["IDENTITY_SMTP_HOST"] == "mail"
    # The secret comes from the operator's environment, never from the file.
    assert environment["IDENTITY_SECRET_KEY"].startswith("${IDENTITY_SECRET_KEY:?")
    assert COMPOSE["services"]["migrate"]["environment"] == environment
