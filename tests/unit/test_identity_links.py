"""Linking and unlinking identities: the domain rule and the use cases on the memory store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from identity.adapters.memory import memory_uow_factory
from identity.application import external_sign_in as sign_in
from identity.application.ports import IdentityProvider
from identity.application.tokens import TokenPair
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    IdentityInUseError,
    IdentityNotLinkedError,
    LastSignInMethodError,
    OAuthFailedError,
)
from identity.domain.external_sign_in import LinkedIdentity, identity_to_unlink
from identity.domain.identities import ExternalIdentity, OAuthClient
from tests.fakes import Services, default_policy, make_services

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def account(*, password: bool) -> Account:
    return Account(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        email=Email("ann@example.com"),
        created_at=T0,
        updated_at=T0,
        password_hash="hash" if password else None,
        is_verified=True,
    )


def link(owner: Account, provider: str) -> LinkedIdentity:
    return LinkedIdentity(
        id=uuid.uuid4(),
        tenant_id=owner.tenant_id,
        user_id=owner.id,
        provider=provider,
        subject=f"{provider}-subject",
        email_at_link=None,
        created_at=T0,
    )


def test_an_identity_can_go_while_a_password_or_another_identity_remains() -> None:
    with_password, without = account(password=True), account(password=False)
    github = link(with_password, "github")
    both = [link(without, "github"), link(without, "corp")]

    assert identity_to_unlink(with_password, [github], "github") == github
    assert identity_to_unlink(without, both, "corp") == both[1]
    with pytest.raises(LastSignInMethodError):
        identity_to_unlink(without, both[:1], "github")
    with pytest.raises(IdentityNotLinkedError):
        identity_to_unlink(with_password, [github], "corp")
    # Someone else's link never counts as the caller's.
    with pytest.raises(IdentityNotLinkedError):
        identity_to_unlink(with_password, [both[0]], "github")


class FakeProvider(IdentityProvider):
    """Answers with whoever the test says; no network."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.person = ExternalIdentity(name, "subject-1", "ann@example.com", True)

    async def authorization_url(
        self, client: OAuthClient, *, redirect_uri: str, state: str, nonce: str, code_challenge: str
    ) -> str:
        return f"https://{self.name}.example/authorize?state={state}"

    async def exchange(
        self, client: OAuthClient, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        return self.person


def sign_in_services(
    services: Services, *providers: FakeProvider
) -> sign_in.ExternalSignInServices:
    clients = {f"oidc_{p.name}": ("client", "secret") for p in providers}
    return sign_in.ExternalSignInServices(
        uow=memory_uow_factory(services.store),
        clock=services.clock,
        providers={
            p.name: sign_in.ConfiguredProvider(
                name=p.name,
                method="oidc",
                settings_key=f"oidc_{p.name}",
                adapter=p,
                redirect_uri=f"https://id.example/auth/oidc/{p.name}/callback",
            )
            for p in providers
        },
        tokens=services.accounts.tokens,
        policy=default_policy(provider_clients=clients),
        normalise_email=Email,
    )


async def run_flow(
    flows: sign_in.ExternalSignInServices,
    services: Services,
    provider: str,
    link_to: Account | None,
    *,
    finish_at: str | None = None,
) -> sign_in.SignedIn | sign_in.Linked:
    started = await sign_in.StartExternalSignIn(flows)(
        sign_in.StartSignIn(services.tenant, provider=provider, link_to=link_to)
    )
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    return await sign_in.FinishExternalSignIn(flows)(
        sign_in.FinishSignIn(
            services.tenant,
            browser_binding=started.browser_binding,
            state=state,
            code="code",
            provider=finish_at or provider,
        )
    )


async def test_a_link_flow_links_to_the_user_who_started_it_and_never_signs_in() -> None:
    services = await make_services()
    corp = FakeProvider("corp")
    flows = sign_in_services(services, corp)
    pair = await services.register_verified("bea@example.com")

    result = await run_flow(flows, services, "corp", pair.account)

    assert isinstance(result, sign_in.Linked)
    assert (result.link.user_id, result.link.provider) == (pair.account.id, "corp")
    principal = await services.principal(pair)
    assert principal.account.identities == ("corp",)
    # The same identity cannot be linked to a second user.
    other = await services.register_verified("cy@example.com")
    with pytest.raises(IdentityInUseError):
        await run_flow(flows, services, "corp", other.account)


async def test_a_flow_finishes_only_at_the_provider_that_started_it() -> None:
    services = await make_services()
    flows = sign_in_services(services, FakeProvider("corp"), FakeProvider("acme"))

    with pytest.raises(OAuthFailedError):
        await run_flow(flows, services, "corp", None, finish_at="acme")


async def test_racing_unlinks_never_leave_an_account_without_a_way_in() -> None:
    services = await make_services()
    corp, acme = FakeProvider("corp"), FakeProvider("acme")
    flows = sign_in_services(services, corp, acme)
    first = await run_flow(flows, services, "corp", None)  # no password
    assert isinstance(first, sign_in.SignedIn) and isinstance(first.tokens, TokenPair)
    owner = first.tokens.account
    acme.person = ExternalIdentity("acme", "acme-1", "other@example.com", True)
    assert isinstance(await run_flow(flows, services, "acme", owner), sign_in.Linked)

    unlink = sign_in.UnlinkIdentity(flows)
    results = await asyncio.gather(
        unlink(services.tenant, owner.id, "corp"),
        unlink(services.tenant, owner.id, "acme"),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["LastSignInMethodError", "NoneType"]
    left = await sign_in.ListIdentities(flows)(services.tenant, owner)
    assert len(left) == 1
