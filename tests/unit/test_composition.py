"""The composition root: one sealer bundle, handlers injected by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject

import identity
from identity.adapters.sealing import Sealer, Sealers
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare, handlers

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


def test_every_handler_injection_is_resolved_without_being_listed() -> None:
    asking = _modules_asking_for_providers()
    assert len(asking) > 5, "the check would prove nothing"
    # Only the handlers inject: a module elsewhere would get the raw marker.
    assert all(name.startswith(f"{handlers.__name__}.") for name in asking), asking
    endpoints = declare.collect(handlers, Container)
    injected = [entry for group in endpoints for entry in group.injected]
    modules = {entry.handler.__module__ for entry in injected if entry.markers}
    assert modules == set(asking)
    for entry in injected:
        assert entry.names is not None and len(entry.names) == len(entry.markers)
        assert all(hasattr(Container, name) for _, name, _ in entry.names)


def test_a_marker_naming_no_provider_of_the_container_stops_the_start() -> None:
    stranger = providers.Object("not the container's")

    async def handler(request: object, value: str = Provide[stranger]) -> None: ...

    endpoints = declare.Endpoints(tag="test")
    endpoints.get("/stranger", summary="A stranger", storage=False)(inject(handler))
    [injected] = endpoints.injected
    with pytest.raises(ValueError, match=r"handler\(value=\.\.\.\)"):
        injected.bind(Container)
