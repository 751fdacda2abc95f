"""Sign-in with any configured provider, and the signed-in user's linked identities.

Every provider runs one flow: ``/login`` sets a cookie scoped to the provider's
callback path and redirects; the callback answers tokens (or a redirect with
them in the fragment), or, for a flow started by ``POST
/auth/identities/{provider}/link``, the new link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import external_sign_in as sign_in
from identity.application.first_factor import MfaRequired, SignInResult
from identity.domain.accounts import Account
from identity.domain.errors import DomainError, ProviderNotConfiguredError
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.identities import RESERVED_PROVIDER_NAMES
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import problem_for, problem_response
from identity.entrypoints.http.views import SIGNED_IN, client_info, sign_in_view

COOKIE = "identity_oauth"
# A flow started by a hosted page (section 16) ends on a page, in a browser session:
# its cookie (set beside ``COOKIE``, on the same callback path) names the page's tenant
# and return_to, and the pages' finisher answers the callback.
PAGE_FLOW_COOKIE = "identity_page_flow"
PageFinisher = Callable[[web.Request, str], Awaitable[web.Response]]
PAGE_FINISHER: web.AppKey[PageFinisher] = web.AppKey("pages.provider_finisher")


def callback_path(provider: str) -> str:
    """Our callback path of ``provider`` (the cookie of its flows is scoped to it)."""
    if provider in RESERVED_PROVIDER_NAMES:
        return f"/auth/{provider}/callback"
    return f"/auth/oidc/{provider}/callback"


async def start_flow(
    request: web.Request,
    provider: str,
    use_case: sign_in.StartExternalSignIn,
    *,
    link_to: Account | None = None,
    redirect_to: str | None = None,
) -> web.Response:
    """Open the flow; a sign-in answers 302 to the provider, a link 200 with the URL."""
    command = sign_in.StartSignIn(
        tenant=request_tenant(request),
        redirect_to=redirect_to,
        provider=provider,
        link_to=link_to,
    )
    started = await use_case(command)
    if link_to is None:
        response = web.Response(status=302, headers={"Location": started.authorization_url})
    else:
        response = web.json_response({"authorization_url": started.authorization_url})
    response.set_cookie(
        COOKIE,
        started.browser_binding,
        max_age=started.max_age_seconds,
        path=callback_path(provider),
        httponly=True,
        samesite="Lax",  # sent on the top-level redirect back from the provider
        secure=started.redirect_uri.startswith("https://"),
    )
    return response


async def finish_flow(
    request: web.Request, provider: str, use_case: sign_in.FinishExternalSignIn
) -> web.Response:
    finisher = request.app.get(PAGE_FINISHER)
    if finisher is not None and PAGE_FLOW_COOKIE in request.cookies:
        return await finisher(request, provider)
    query = request.query
    command = sign_in.FinishSignIn(
        tenant=request_tenant(request),
        browser_binding=request.cookies.get(COOKIE),
        state=query.get("state"),
        code=query.get("code"),
        error=query.get("error"),
        client=client_info(request),
        provider=provider,
    )
    try:
        result = await use_case(command)
    except DomainError as error:
        problem = problem_for(error)
        if problem is None:
            raise
        response = problem_response(problem)
    else:
        response = _finished(result)
    # The pending sign-in is spent whatever the outcome.
    response.del_cookie(COOKIE, path=callback_path(provider))
    return response


def _finished(result: sign_in.SignedIn | sign_in.Linked) -> web.Response:
    if isinstance(result, sign_in.Linked):
        if result.redirect_to is None:
            return web.json_response(d.serialise(LinkedIdentityView.of(result.link)))
        fragment = urlencode({"linked": result.link.provider})
        return web.Response(status=302, headers={"Location": f"{result.redirect_to}#{fragment}"})
    if result.redirect_to is None:
        return web.json_response(sign_in_view(result.tokens))
    # The fragment never reaches a server, so the tokens stay out of access logs
    # and Referer headers.
    location = f"{result.redirect_to}#{urlencode(_fragment(result.tokens))}"
    return web.Response(status=302, headers={"Location": location})


def _fragment(result: SignInResult) -> dict[str, str]:
    if isinstance(result, MfaRequired):
        return {
            "mfa_required": "true",
            "mfa_token": result.mfa_token,
            "methods": ",".join(result.methods),
            "expires_in": str(result.expires_in),
        }
    pair = result
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": str(pair.expires_in),
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": str(pair.refresh_token_expires_in),
    }


@attrs.frozen
class LinkedIdentityView:
    """An identity at a provider, linked to the account."""

    provider: str = d.out("`google`, `github` or the name of a configured OIDC provider")
    email: str | None = d.out("the address the provider gave when the link was made")
    linked_at: datetime = d.out()

    @classmethod
    def of(cls, link: LinkedIdentity) -> LinkedIdentityView:
        return cls(link.provider, link.email_at_link, link.created_at)


@attrs.frozen
class LinkedIdentityList:
    """The caller's linked identities, oldest first."""

    items: list[LinkedIdentityView]


@attrs.frozen
class AuthorizationView:
    """Where to send the browser to link the provider account."""

    authorization_url: str = d.out(
        "the provider's authorization URL; open it in this browser (the flow is bound to it "
        "by a cookie set with this answer)"
    )


@attrs.frozen
class StartQuery:
    redirect_to: (
        Annotated[
            str,
            d.Text(
                "where to send the browser afterwards (tokens, or `linked=<provider>`, in the "
                "URL fragment); must be in `IDENTITY_OAUTH_REDIRECT_ALLOWLIST`",
                max_length=2048,
                format="uri",
            ),
        ]
        | None
    ) = None


@attrs.frozen
class CallbackQuery:
    """Read by the flow itself: a missing or wrong value is 400 ``oauth_failed``."""

    code: Annotated[str, d.Text("the authorization code", max_length=4096)] | None = None
    state: Annotated[str, d.Text("the state sent to the provider", max_length=4096)] | None = None
    error: (
        Annotated[str, d.Text("set by the provider when the user refused", max_length=4096)] | None
    ) = None


PROVIDER_PATTERN = "^[a-z][a-z0-9]{0,31}$"
OIDC_NAME = d.path_text(
    "provider", "a provider named in `IDENTITY_OIDC_PROVIDERS`", pattern=PROVIDER_PATTERN
)
ANY_PROVIDER = d.path_text(
    "provider", "`google`, `github` or a configured OIDC provider", pattern=PROVIDER_PATTERN
)
COOKIE_HEADER = (("Set-Cookie", f"`{COOKIE}`: binds the flow to this browser"),)
COOKIE_PARAMETER = (
    (COOKIE, "binds the sign-in to the browser that started it (set by the login)"),
)
LOGIN = {
    "query": StartQuery,
    "ok": None,
    "status": 302,
    "ok_description": "To the provider's authorization page (code flow, `state`, PKCE S256).",
    "headers": (("Location", "the provider's authorization URL"), *COOKIE_HEADER),
    "errors": ("oauth_failed", "provider_not_configured", "provider_unavailable"),
}
CALLBACK = {
    "query": CallbackQuery,
    "cookies": COOKIE_PARAMETER,
    "ok": (*SIGNED_IN, LinkedIdentityView),
    "ok_description": "Signed in: a token pair (or, with MFA on, the `mfa_required` answer); "
    "for a flow started by a link, the new link.",
    "redirect": (
        "To the allowed `redirect_to`, with the token fields (or, with MFA on, the "
        "`mfa_required` fields; or `linked=<provider>`) in the URL fragment."
    ),
    "errors": (
        "oauth_failed",
        "account_disabled",
        "identity_in_use",
        "provider_not_configured",
        "provider_unavailable",
    ),
}

providers = d.Endpoints(tag="providers")
identities = d.Endpoints(tag="identities")


def _oidc_name(name: str) -> str:
    if name in RESERVED_PROVIDER_NAMES:
        # Google and GitHub have paths of their own.
        raise ProviderNotConfiguredError(name)
    return name


@providers.get(
    "/auth/oidc/{provider}/login",
    summary="Start signing in with a named OpenID Connect provider",
    path_params=(OIDC_NAME,),
    **LOGIN,
)
@inject
async def oidc_login(
    request: web.Request,
    provider: str,
    query: StartQuery,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(request, _oidc_name(provider), use_case, redirect_to=query.redirect_to)


@providers.get(
    "/auth/oidc/{provider}/callback",
    summary="Finish signing in with a named OpenID Connect provider",
    description="Validates the state, redeems the code with the PKCE verifier and checks the "
    "ID token (signature, `iss`, `aud`, `azp`, `exp`, `nonce`).",
    path_params=(OIDC_NAME,),
    **CALLBACK,
)
@inject
async def oidc_callback(
    request: web.Request,
    provider: str,
    query: CallbackQuery,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, _oidc_name(provider), use_case)


@providers.get("/auth/github/login", summary="Start signing in with GitHub", **LOGIN)
@inject
async def github_login(
    request: web.Request,
    query: StartQuery,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(request, "github", use_case, redirect_to=query.redirect_to)


@providers.get(
    "/auth/github/callback",
    summary="Finish signing in with GitHub",
    description="Validates the state, redeems the code with the PKCE verifier, and takes the "
    "verified primary address of `GET /user/emails` (none: `oauth_failed`).",
    **CALLBACK,
)
@inject
async def github_callback(
    request: web.Request,
    query: CallbackQuery,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, "github", use_case)


@identities.get(
    "/auth/identities",
    summary="The caller's linked identities",
    ok=LinkedIdentityList,
    auth=d.BEARER,
)
@inject
async def list_identities(
    request: web.Request,
    use_case: sign_in.ListIdentities = Provide[Container.list_identities],
) -> LinkedIdentityList:
    principal = d.user(request)
    links = await use_case(principal.tenant, principal.account)
    return LinkedIdentityList([LinkedIdentityView.of(link) for link in links])


@identities.post(
    "/auth/identities/{provider}/link",
    summary="Start linking a provider account to the caller",
    description="Answers the provider URL to open in this browser; its callback links the "
    "provider account to the caller instead of signing in.",
    path_params=(ANY_PROVIDER,),
    query=StartQuery,
    ok=AuthorizationView,
    headers=COOKIE_HEADER,
    auth=d.BEARER,
    errors=("oauth_failed", "identity_in_use", "provider_not_configured", "provider_unavailable"),
)
@inject
async def link_identity(
    request: web.Request,
    provider: str,
    query: StartQuery,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    account = d.user(request).account
    return await start_flow(
        request, provider, use_case, link_to=account, redirect_to=query.redirect_to
    )


@identities.delete(
    "/auth/identities/{provider}",
    summary="Unlink the caller's identity at a provider",
    path_params=(ANY_PROVIDER,),
    auth=d.BEARER,
    errors=("last_sign_in_method",),
)
@inject
async def unlink_identity(
    request: web.Request,
    provider: str,
    use_case: sign_in.UnlinkIdentity = Provide[Container.unlink_identity],
) -> None:
    principal = d.user(request)
    await use_case(principal.tenant, principal.account.id, provider, client_info(request))
