"""Signing in (and linking) with an identity provider from the pages.

The flow is the API's (section 13: state bound to the browser, nonce, PKCE,
the provider's callback path); a page starts it and, through a second cookie
on the callback path, has it end on a page in a browser session instead of
a JSON answer.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from aiohttp import web

from identity.application import external_sign_in as sign_in
from identity.domain.errors import DomainError
from identity.entrypoints.http.handlers.providers import (
    COOKIE,
    PAGE_FLOW_COOKIE,
    callback_path,
)
from identity.entrypoints.http.keys import CONTAINER, SETTINGS
from identity.entrypoints.http.problems import problem_for
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages.errors import render_error
from identity.entrypoints.pages.page import Page, load_page
from identity.entrypoints.pages.security import safe_return_to
from identity.entrypoints.pages.signing import finish_sign_in

routes = web.RouteTableDef()

LABELS = {"google": "Google", "github": "GitHub"}


def configured(page: Page) -> list[str]:
    """The providers the page's tenant has a client for."""
    services = page.container.sign_in_services()
    policy = services.policy_for(page.known_tenant)
    return [
        name
        for name, provider in services.providers.items()
        if policy.client_for(provider.settings_key) is not None
    ]


def buttons(page: Page, path: str = "/ui/sign-in/provider/") -> list[dict[str, str]]:
    return [
        {"name": LABELS.get(name, name.capitalize()), "url": page.url(path + name)}
        for name in configured(page)
    ]


async def start(page: Page, provider: str, *, link: bool) -> web.Response:
    command = sign_in.StartSignIn(
        tenant=page.known_tenant,
        provider=provider,
        link_to=page.principal.account if link and page.principal is not None else None,
    )
    started = await page.container.start_external_sign_in()(command)
    secure = started.redirect_uri.startswith("https://")
    response = web.Response(status=303, headers={"Location": started.authorization_url})
    for name, value in (
        (COOKIE, started.browser_binding),
        (PAGE_FLOW_COOKIE, f"{page.tenant_slug}|{quote(page.next_url, safe='')}"),
    ):
        response.set_cookie(
            name,
            value,
            max_age=started.max_age_seconds,
            path=callback_path(provider),
            httponly=True,
            samesite="Lax",  # sent on the top-level redirect back from the provider
            secure=secure,
        )
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/ui/sign-in/provider/{provider}")
async def sign_in_with(request: web.Request) -> web.Response:
    page = await load_page(request)
    provider = request.match_info["provider"]
    if provider not in configured(page):
        raise web.HTTPNotFound()
    return await start(page, provider, link=False)


@routes.get("/ui/account/identities/link/{provider}")
async def link(request: web.Request) -> web.Response:
    page = await load_page(request)
    provider = request.match_info["provider"]
    if page.principal is None:
        return page.redirect(page.url("/ui/sign-in", return_to=page.url("/ui/account")))
    if provider not in configured(page):
        raise web.HTTPNotFound()
    return await start(page, provider, link=True)


async def finish(request: web.Request, provider: str) -> web.Response:
    """The provider's callback of a flow a page started: a browser session, or a link."""
    slug, _, quoted = request.cookies.get(PAGE_FLOW_COOKIE, "").partition("|")
    container = request.app[CONTAINER]
    settings_allowlist = request.app[SETTINGS].policy.oauth_redirect_allowlist
    try:
        tenant = await container.resolve_tenant()(slug or None)
    except DomainError:
        raise web.HTTPNotFound() from None
    page = await load_page(request, tenant=tenant)
    page.redirect_status = 302
    page.return_to = safe_return_to(unquote(quoted), settings_allowlist)
    page.has_return_to = True
    page.clear_cookie(COOKIE, path=callback_path(provider))
    page.clear_cookie(PAGE_FLOW_COOKIE, path=callback_path(provider))
    query = request.query
    command = sign_in.FinishSignIn(
        tenant=tenant,
        browser_binding=request.cookies.get(COOKIE),
        state=query.get("state"),
        code=query.get("code"),
        error=query.get("error"),
        client=client_info(request),
        provider=provider,
    )
    try:
        result = await container.finish_external_sign_in()(command)
    except DomainError as error:
        problem = problem_for(error)
        if problem is None:
            raise
        return render_error(request, problem)
    if isinstance(result, sign_in.Linked):
        return page.redirect(page.url("/ui/account", notice="linked", return_to=None))
    return await finish_sign_in(page, result.tokens)
