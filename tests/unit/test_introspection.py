"""The Introspect use case over the in-memory fakes."""

from __future__ import annotations

from identity.application.introspection import Introspect, IntrospectToken
from identity.application.sessions import Authenticate, LogOut
from tests.fakes import Services, make_services

ADA = "ada@example.com"


def introspect(app: Services) -> Introspect:
    return Introspect(Authenticate(app.sessions))


async def test_a_live_access_token_is_active_with_its_claims() -> None:
    app = await make_services()
    pair = await app.register_verified(ADA)

    result = await introspect(app)(IntrospectToken(app.tenant, pair.access_token))

    assert result.active
    assert result.claims == app.codec.decode_access(pair.access_token)


async def test_refresh_tokens_junk_other_tenants_and_ended_sessions_are_inactive() -> None:
    app = await make_services()
    acme = await app.create_tenant("acme")
    pair = await app.register_verified(ADA)
    other = await app.register_verified(ADA, tenant=acme)
    use_case = introspect(app)

    for token in (pair.refresh_token, "junk", other.access_token):
        assert not (await use_case(IntrospectToken(app.tenant, token))).active
    await LogOut(app.sessions)(app.tenant, pair.refresh_token)
    assert not (await use_case(IntrospectToken(app.tenant, pair.access_token))).active


def test_the_command_never_shows_the_token() -> None:
    assert "secret-token" not in repr(IntrospectToken(None, "secret-token"))  # type: ignore[arg-type]
