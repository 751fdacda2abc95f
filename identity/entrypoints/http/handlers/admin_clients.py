"""The tenant's registered OAuth clients (scope ``clients:manage``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.oauth_clients import ClientAdmin, ClientChanges, ClientSpec
from identity.domain.api_keys import Scope
from identity.domain.oauth import (
    AuthMethod,
    Client,
    ClientType,
    GrantType,
)
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.views import client_info

endpoints = d.Endpoints(tag="clients")
MANAGE = d.api_key(Scope.CLIENTS_MANAGE)
CLIENT_ID = d.path_text("client_id", "the client's id", pattern="^[0-9a-f-]{1,64}$")

_URIS = "exact URIs: https, http to a loopback address, or a reversed-domain custom scheme"


class JsonObject(d.Rule):
    """Any JSON object (a JWK set), bounded by the body limit."""

    def reader(self, base: Any) -> Callable[[Any], Any]:
        def read(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise d.Invalid("must be an object")
            return value

        return read

    def schema(self, base: Any) -> dict[str, Any]:
        return {"type": "object", "description": self.description}


Uris = Annotated[list[str], d.Strings(_URIS, max_items=20, max_length=2048)]
Url = Annotated[str, d.Text("an http(s) URL", max_length=2048)]
Algorithm = Annotated[str, d.Text("RS256 (default) or EdDSA", max_length=16)]
Jwks = Annotated[dict[str, Any], JsonObject("its public keys inline, for private_key_jwt")]


@attrs.frozen
class NewClientBody:
    name: Annotated[str, d.Text("a name people recognise the application by", max_length=200)]
    redirect_uris: Uris | None = None
    type: (
        Annotated[
            ClientType,
            d.Choice("confidential (a back end holding a secret) or public (browser or app)"),
        ]
        | None
    ) = None
    first_party: Annotated[bool, d.Flag("the deployment's own application: no consent")] = False
    post_logout_redirect_uris: Uris | None = None
    grant_types: (
        Annotated[
            list[str],
            d.Strings(
                "the grants it may use; default by type",
                choices=tuple(grant.value for grant in GrantType),
                max_items=len(GrantType),
            ),
        ]
        | None
    ) = None
    allowed_scopes: (
        Annotated[list[str], d.Strings("the scopes it may ask for; default all of the tenant's")]
        | None
    ) = None
    token_endpoint_auth_method: (
        Annotated[
            AuthMethod,
            d.Choice(
                "how it authenticates at the token endpoint; default client_secret_basic "
                "(confidential) or none (public)"
            ),
        ]
        | None
    ) = None
    jwks_uri: Url | None = None
    jwks: (
        Annotated[dict[str, Any], JsonObject("its public keys inline, for private_key_jwt")] | None
    ) = None
    backchannel_logout_uri: Url | None = None
    id_token_signed_response_alg: Algorithm | None = None
    logo_url: Url | None = None


@attrs.frozen
class ClientPatchBody:
    any_of = (
        "name",
        "redirect_uris",
        "post_logout_redirect_uris",
        "allowed_scopes",
        "first_party",
        "backchannel_logout_uri",
        "id_token_signed_response_alg",
        "logo_url",
        "jwks_uri",
    )

    name: Annotated[str, d.Text("the name", max_length=200)] | None = None
    redirect_uris: Uris | None = None
    post_logout_redirect_uris: Uris | None = None
    allowed_scopes: Annotated[list[str], d.Strings("the scopes it may ask for")] | None = None
    first_party: Annotated[bool, d.Flag("no consent screen")] | None = None
    backchannel_logout_uri: Url | None = None
    id_token_signed_response_alg: Algorithm | None = None
    logo_url: Url | None = None
    jwks_uri: Url | None = None


@attrs.frozen
class ClientView:
    """A registered client, never its secret."""

    client_id: str
    name: str
    type: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    allowed_scopes: list[str]
    first_party: bool
    token_endpoint_auth_method: str
    jwks_uri: str | None
    backchannel_logout_uri: str | None
    id_token_signed_response_alg: str
    logo_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, client: Client) -> ClientView:
        return cls(
            client_id=client.client_id,
            name=client.name,
            type=client.type.value,
            redirect_uris=list(client.redirect_uris),
            post_logout_redirect_uris=list(client.post_logout_redirect_uris),
            grant_types=[grant.value for grant in client.grant_types],
            allowed_scopes=list(client.allowed_scopes),
            first_party=client.first_party,
            token_endpoint_auth_method=client.token_endpoint_auth_method.value,
            jwks_uri=client.jwks_uri,
            backchannel_logout_uri=client.backchannel_logout_uri,
            id_token_signed_response_alg=client.id_token_signed_response_alg,
            logo_url=client.logo_url,
            created_at=client.created_at,
        )


@attrs.frozen
class NewClientView(ClientView):
    """A registered client; `client_secret` is shown this once (confidential clients)."""

    client_secret: str | None = d.out("shown once; null for clients without a secret")

    @classmethod
    def new(cls, client: Client, secret: str | None) -> NewClientView:
        return cls(**attrs.asdict(ClientView.of(client), recurse=False), client_secret=secret)


@attrs.frozen
class ClientSecretView:
    """A new secret for the client, shown this once; the old one no longer works."""

    client_id: str
    client_secret: str


@attrs.frozen
class ClientList:
    """A page of the tenant's clients, oldest first."""

    items: list[ClientView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


def spec_of(body: NewClientBody) -> ClientSpec:
    return ClientSpec(
        name=body.name,
        redirect_uris=tuple(body.redirect_uris or ()),
        type=body.type or ClientType.CONFIDENTIAL,
        first_party=body.first_party,
        post_logout_redirect_uris=tuple(body.post_logout_redirect_uris or ()),
        grant_types=tuple(GrantType(g) for g in body.grant_types) if body.grant_types else None,
        allowed_scopes=tuple(body.allowed_scopes) if body.allowed_scopes is not None else None,
        token_endpoint_auth_method=(
            AuthMethod(body.token_endpoint_auth_method) if body.token_endpoint_auth_method else None
        ),
        jwks_uri=body.jwks_uri,
        jwks=body.jwks,
        backchannel_logout_uri=body.backchannel_logout_uri,
        id_token_signed_response_alg=body.id_token_signed_response_alg or "RS256",
        logo_url=body.logo_url,
    )


@endpoints.post(
    "/admin/clients",
    summary="Register a client",
    body=NewClientBody,
    ok=NewClientView,
    status=201,
    auth=MANAGE,
)
@inject
async def create_client(
    request: web.Request,
    body: NewClientBody,
    clients: ClientAdmin = Provide[Container.client_admin],
) -> NewClientView:
    new = await clients.create(request_tenant(request), spec_of(body), client_info(request))
    return NewClientView.new(new.client, new.secret)


@endpoints.get(
    "/admin/clients",
    summary="List the tenant's clients",
    query=d.PageQuery,
    ok=ClientList,
    auth=MANAGE,
)
@inject
async def list_clients(
    request: web.Request, query: d.PageQuery, clients: ClientAdmin = Provide[Container.client_admin]
) -> ClientList:
    page = await clients.list_page(request_tenant(request).id, query.cursor, query.limit)
    return ClientList([ClientView.of(c) for c in page.items], encode_cursor(page.next))


@endpoints.get(
    "/admin/clients/{client_id}",
    summary="Read a client",
    path_params=(CLIENT_ID,),
    ok=ClientView,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def get_client(
    request: web.Request, client_id: str, clients: ClientAdmin = Provide[Container.client_admin]
) -> ClientView:
    return ClientView.of(await clients.get(request_tenant(request).id, client_id))


@endpoints.patch(
    "/admin/clients/{client_id}",
    summary="Change a client",
    path_params=(CLIENT_ID,),
    body=ClientPatchBody,
    ok=ClientView,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def update_client(
    request: web.Request,
    client_id: str,
    body: ClientPatchBody,
    clients: ClientAdmin = Provide[Container.client_admin],
) -> ClientView:
    changes = ClientChanges(
        name=body.name,
        redirect_uris=tuple(body.redirect_uris) if body.redirect_uris is not None else None,
        post_logout_redirect_uris=(
            tuple(body.post_logout_redirect_uris)
            if body.post_logout_redirect_uris is not None
            else None
        ),
        allowed_scopes=tuple(body.allowed_scopes) if body.allowed_scopes is not None else None,
        first_party=body.first_party,
        backchannel_logout_uri=body.backchannel_logout_uri,
        id_token_signed_response_alg=body.id_token_signed_response_alg,
        logo_url=body.logo_url,
        jwks_uri=body.jwks_uri,
    )
    return ClientView.of(await clients.update(request_tenant(request), client_id, changes))


@endpoints.delete(
    "/admin/clients/{client_id}",
    summary="Delete a client; every session it holds ends",
    path_params=(CLIENT_ID,),
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def delete_client(
    request: web.Request, client_id: str, clients: ClientAdmin = Provide[Container.client_admin]
) -> None:
    await clients.delete(request_tenant(request).id, client_id, client_info(request))


@endpoints.post(
    "/admin/clients/{client_id}/rotate-secret",
    summary="Give the client a new secret (the old one stops working at once)",
    path_params=(CLIENT_ID,),
    ok=ClientSecretView,
    auth=MANAGE,
    errors=("not_found", "validation_error"),
)
@inject
async def rotate_client_secret(
    request: web.Request, client_id: str, clients: ClientAdmin = Provide[Container.client_admin]
) -> ClientSecretView:
    client, secret = await clients.rotate_secret(request_tenant(request).id, client_id)
    return ClientSecretView(client.client_id, secret)
