"""The composition root: one sealer bundle, handlers wired by package."""

from __future__ import annotations

from pathlib import Path

import identity
from identity.adapters.sealing import Sealer, Sealers
from identity.entrypoints.container import Container
from identity.entrypoints.http import handlers
from identity.entrypoints.settings import load_settings

SECRET = "c" * 40


def test_each_kind_of_sealed_record_has_its_own_key() -> None:
    sealers = Sealers.derive(SECRET)
    kinds = [getattr(sealers, field.name) for field in Sealers.__attrs_attrs__]
    sealed = kinds[0].seal(b"record")
    assert kinds[0].unseal(sealed) == b"record"
    digests = {sealer.lookup_digest("ada@example.com") for sealer in kinds}
    assert len(digests) == len(kinds)
    # Derived again from the same secret: the same keys (restarts read what was sealed).
    assert Sealers.derive(SECRET).outbox.unseal(sealed) == b"record"
    # The purposes are stored data: the outbox key is the one it always was.
    assert Sealer(SECRET, "outbox").unseal(sealed) == b"record"


def _modules_asking_for_providers() -> list[str]:
    """Every module of the package whose code injects (``Provide[Container....]``)."""
    root = Path(identity.__file__).parent
    return [
        ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for path in sorted(root.rglob("*.py"))
        if "Provide[Container." in path.read_text()
    ]


def test_every_handler_module_is_wired_without_being_listed() -> None:
    container = Container(
        settings=load_settings({"IDENTITY_DATABASE_URL": "sqlite+aiosqlite:///:memory:"})
    )
    container.wire()
    try:
        asking = _modules_asking_for_providers()
        assert len(asking) > 5, "the check would prove nothing"
        wired = {package.__name__ for package in container.wired_to_packages}
        assert wired == {handlers.__name__}
        # Only the handlers inject: a module elsewhere would get the raw marker.
        assert all(name.startswith(f"{handlers.__name__}.") for name in asking), asking
    finally:
        container.unwire()
