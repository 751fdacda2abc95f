"""The admin API's own keys: mint, list, revoke (scope ``api-keys:manage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.api_keys import ApiKeys, CreateKey
from identity.domain.api_keys import ApiKey, Scope
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.problems import FieldError, validation_problem
from identity.entrypoints.http.views import client_info

endpoints = d.Endpoints(tag="admin")
MANAGE = d.api_key(Scope.API_KEYS_MANAGE)
KEY_ID = d.path_id("key_id", "the key's id")


@attrs.frozen
class NewKeyBody:
    name: Annotated[str, d.Text("a name to recognise the key by", max_length=200)]
    scopes: Annotated[
        list[str],
        d.Strings(
            "the scopes the key carries; no more than the calling key's own",
            choices=tuple(scope.value for scope in Scope),
            max_items=len(Scope),
        ),
    ]


@attrs.frozen
class ApiKeyView:
    """An API key, never its secret."""

    id: UUID
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = d.out("when it was revoked; null while it works")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyView:
        return cls(key.id, key.name, sorted(key.scopes), key.created_at, key.revoked_at)


@attrs.frozen
class NewApiKeyView:
    """A new API key; ``key`` is shown this once and never again."""

    id: UUID
    name: str
    scopes: list[str]
    key: str = d.out("send it as `Authorization: Bearer <key>`; shown once")
    created_at: datetime = d.out()


@attrs.frozen
class ApiKeyList:
    """A page of the tenant's keys, oldest first, revoked ones included."""

    items: list[ApiKeyView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


@endpoints.post(
    "/admin/api-keys",
    summary="Create an API key",
    body=NewKeyBody,
    ok=NewApiKeyView,
    status=201,
    auth=MANAGE,
)
@inject
async def create_api_key(
    request: web.Request,
    body: NewKeyBody,
    keys: ApiKeys = Provide[Container.api_keys],
) -> NewApiKeyView:
    if not body.scopes:
        raise validation_problem([FieldError("scopes", "must name at least one scope")])
    new = await keys.create(
        CreateKey(
            tenant=request_tenant(request),
            name=body.name,
            scopes=frozenset(Scope(name) for name in body.scopes),
            granted_by=d.service(request),
            client=client_info(request),
        )
    )
    return NewApiKeyView(
        new.key.id, new.key.name, sorted(new.key.scopes), new.token, new.key.created_at
    )


@endpoints.get(
    "/admin/api-keys",
    summary="List the tenant's API keys",
    query=d.PageQuery,
    ok=ApiKeyList,
    auth=MANAGE,
)
@inject
async def list_api_keys(
    request: web.Request, query: d.PageQuery, keys: ApiKeys = Provide[Container.api_keys]
) -> ApiKeyList:
    page = await keys.list_page(request_tenant(request).id, query.cursor, query.limit)
    return ApiKeyList([ApiKeyView.of(key) for key in page.items], encode_cursor(page.next))


@endpoints.delete(
    "/admin/api-keys/{key_id}",
    summary="Revoke an API key (effective at once, in every process)",
    path_params=(KEY_ID,),
    auth=MANAGE,
)
@inject
async def revoke_api_key(
    request: web.Request, key_id: UUID, keys: ApiKeys = Provide[Container.api_keys]
) -> None:
    await keys.revoke(
        request_tenant(request).id, key_id, by=d.service(request), client=client_info(request)
    )
