"""``/oauth2/*``: the authorization server's endpoints (section 17)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import jwt
from aiohttp import web
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from dependency_injector.wiring import Provide, inject

from identity.application.api_keys import AuthenticateApiKey
from identity.application.introspection import Introspect, IntrospectToken
from identity.application.oauth_clients import ClientAdmin, ClientSpec
from identity.application.oauth_server import (
    AuthenticateClient,
    AuthorizeFlow,
    AuthorizeRequest,
    ClientCredentials,
    ClientTokens,
    ErrorPage,
    GrantConsent,
    Interact,
    LogoutRequest,
    OAuthServices,
    RedirectToClient,
    RpInitiatedLogout,
    TokenAnswer,
    TokenGrants,
    UserGrants,
    user_claims,
)
from identity.application.ports import BrowserSessions
from identity.application.tenancy import ResolveTenant
from identity.domain.api_keys import InsufficientScopeError, InvalidApiKeyError, Scope
from identity.domain.errors import InvalidTokenError
from identity.domain.oauth import (
    AuthMethod,
    ClientType,
    GrantType,
    InvalidClientMetadataError,
    OAuthProtocolError,
    invalid_request,
    is_loopback_redirect,
)
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.bodies import read_json_object
from identity.entrypoints.http.oauth_errors import (
    NO_STORE,
    error_page,
    plain_page,
    read_form,
    single_values,
)
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.http.views import client_info
from identity.entrypoints.settings import Settings

endpoints = d.Endpoints(tag="oauth", oauth_errors=True)
pages = d.Endpoints(tag="oauth", html=True)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_LONG = 4096


# Every form parameter is an optional bounded string: the grant says which it needs.
ClientId: TypeAlias = (
    Annotated[
        str, d.Text("the client (with `client_secret_post`, `none` or an assertion)", max_length=64)
    ]
    | None
)
ClientSecret: TypeAlias = Annotated[str, d.Text("`client_secret_post` only", max_length=256)] | None
AssertionType: TypeAlias = (
    Annotated[str, d.Text(f"`{ASSERTION_TYPE}` (private_key_jwt)", max_length=128)] | None
)
Assertion: TypeAlias = (
    Annotated[str, d.Text("a JWT signed with a key of the client's JWKS", max_length=_LONG)] | None
)
GrantTypeField: TypeAlias = (
    Annotated[
        str, d.Text("`authorization_code`, `refresh_token` or `client_credentials`", max_length=64)
    ]
    | None
)
Code: TypeAlias = Annotated[str, d.Text("authorization_code: the code", max_length=256)] | None
RedirectUri: TypeAlias = (
    Annotated[str, d.Text("authorization_code: as in the authorization request", max_length=2048)]
    | None
)
Verifier: TypeAlias = (
    Annotated[str, d.Text("authorization_code: the PKCE verifier", max_length=128)] | None
)
RefreshToken: TypeAlias = (
    Annotated[str, d.Text("refresh_token: the refresh token", max_length=_LONG)] | None
)
ScopeField: TypeAlias = (
    Annotated[str, d.Text("refresh_token (narrower) and client_credentials", max_length=2048)]
    | None
)
Resource: TypeAlias = (
    Annotated[str, d.Text("client_credentials: RFC 8707 resource (the `aud`)", max_length=2048)]
    | None
)
TokenField: TypeAlias = Annotated[str, d.Text("the token", max_length=_LONG)] | None
TokenHint: TypeAlias = (
    Annotated[str, d.Text("`access_token` or `refresh_token`", max_length=64)] | None
)


@attrs.frozen
class ClientAuthFields:
    client_id: ClientId = None
    client_secret: ClientSecret = None
    client_assertion_type: AssertionType = None
    client_assertion: Assertion = None


@attrs.frozen
class TokenBody(ClientAuthFields):
    grant_type: GrantTypeField = None
    code: Code = None
    redirect_uri: RedirectUri = None
    code_verifier: Verifier = None
    refresh_token: RefreshToken = None
    scope: ScopeField = None
    resource: Resource = None


@attrs.frozen
class TokenView:
    """RFC 6749 §5.1 token response."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = d.out(
        "with `offline_access`, or for first-party clients", omit_if_none=True
    )
    id_token: str | None = d.out("with the `openid` scope", omit_if_none=True)

    @classmethod
    def of(cls, answer: TokenAnswer) -> TokenView:
        return cls(
            answer.access_token,
            "Bearer",
            answer.expires_in,
            answer.scope,
            answer.refresh_token,
            answer.id_token,
        )


def _credentials(request: web.Request, body: ClientAuthFields) -> ClientCredentials:
    """RFC 6749 §2.3: exactly one way of authenticating; ``invalid_request`` for several."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        client_id, secret = extract_basic_authorization(request.headers)
        if body.client_secret or body.client_assertion:
            raise invalid_request("more than one client authentication method")
        if body.client_id is not None and body.client_id != client_id:
            raise invalid_request("client_id differs from the Basic credentials")
        if not client_id:
            raise OAuthProtocolError("invalid_client", "malformed Basic credentials", 401)
        return ClientCredentials(client_id, AuthMethod.CLIENT_SECRET_BASIC, secret=secret)
    if body.client_assertion is not None or body.client_assertion_type is not None:
        if body.client_assertion_type != ASSERTION_TYPE or not body.client_assertion:
            raise invalid_request(f"client_assertion_type must be {ASSERTION_TYPE}")
        if body.client_secret:
            raise invalid_request("more than one client authentication method")
        client_id = body.client_id
        if client_id is None:
            try:
                unverified = jwt.decode(body.client_assertion, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise OAuthProtocolError(
                    "invalid_client", "malformed client assertion", 401
                ) from None
            subject = unverified.get("sub")
            client_id = subject if isinstance(subject, str) else None
        return ClientCredentials(
            client_id, AuthMethod.PRIVATE_KEY_JWT, assertion=body.client_assertion
        )
    if body.client_secret is not None:
        return ClientCredentials(
            body.client_id, AuthMethod.CLIENT_SECRET_POST, secret=body.client_secret
        )
    return ClientCredentials(body.client_id, AuthMethod.NONE)


def _json(data: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(dict(data), status=status, headers=NO_STORE)


@endpoints.post(
    "/oauth2/token",
    summary="Token endpoint (RFC 6749 §3.2)",
    description="`authorization_code` (with PKCE), `refresh_token` (rotation, reuse detection) "
    "and `client_credentials`. Client authentication as registered.",
    body=TokenBody,
    forms=True,
    ok=TokenView,
)
@inject
async def oauth_token(
    request: web.Request,
    body: TokenBody,
    authenticate: AuthenticateClient = Provide[Container.authenticate_client],
    grants: TokenGrants = Provide[Container.token_grants],
) -> web.StreamResponse:
    if body.grant_type is None:
        raise invalid_request("grant_type is required")
    who = await authenticate(_credentials(request, body))
    info = client_info(request)
    if body.grant_type == "client_credentials":
        answer = grants.client_credentials(who, body.scope, body.resource)
    elif body.grant_type == "authorization_code":
        answer = await grants.authorization_code(
            who, body.code, body.redirect_uri, body.code_verifier, info
        )
    elif body.grant_type == "refresh_token":
        answer = await grants.refresh_token(who, body.refresh_token, body.scope, info)
    else:
        raise OAuthProtocolError("unsupported_grant_type", "unsupported grant_type")
    return _json(d.serialise(TokenView.of(answer)))


# --- authorize ---------------------------------------------------------------------


def _location(base: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(base)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return parts._replace(query=urlencode(query)).geturl()


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


async def _authorize_params(request: web.Request) -> tuple[dict[str, str], bool]:
    """The request's parameters (query, or form for POST) and whether one repeats."""
    source: Mapping[str, Any] = request.query
    if request.method == "POST":
        if request.content_type != "application/x-www-form-urlencoded":
            return dict(request.query), True
        try:
            source = await read_form(request)
        except OAuthProtocolError:
            return dict(request.query), True
    try:
        return single_values(source), False
    except OAuthProtocolError:
        return {key: str(source[key]) for key in source}, True


@pages.get(
    "/oauth2/authorize",
    summary="Authorization endpoint (code flow, PKCE S256)",
    description="Query parameters per RFC 6749 §4.1.1, RFC 7636, OpenID Connect Core §3.1.2.1 "
    "(`response_type=code`, `client_id`, `redirect_uri`, `scope`, `state`, `nonce`, "
    "`code_challenge`, `code_challenge_method=S256`, `prompt`, `max_age`, `login_hint`, "
    "`ui_locales`, `resource`). An unknown client or redirect URI renders an error page (400).",
    status=200,
    ok_description="an error page (400 when the client or redirect URI cannot be trusted)",
    redirect="the client's redirect URI with `code`, `state` and `iss`, or an error; or a "
    "sign-in, second-factor or consent page that comes back here",
)
@inject
async def authorize(
    request: web.Request,
    flow: AuthorizeFlow = Provide[Container.authorize_flow],
) -> web.StreamResponse:
    return await _authorize(request, flow)


@pages.post("/oauth2/authorize", summary="Authorization endpoint (form post)", status=200)
@inject
async def authorize_form(
    request: web.Request,
    flow: AuthorizeFlow = Provide[Container.authorize_flow],
) -> web.StreamResponse:
    return await _authorize(request, flow)


async def _authorize(request: web.Request, flow: AuthorizeFlow) -> web.StreamResponse:
    params, repeated = await _authorize_params(request)
    if repeated:
        found = await flow.client_and_redirect(params)
        if isinstance(found, ErrorPage):
            return error_page(found.message)
        result: Any = RedirectToClient(
            found[2],
            {
                "error": "invalid_request",
                "error_description": "a parameter was sent more than once",
                "iss": flow.issuer,
                **({"state": params["state"]} if "state" in params else {}),
            },
        )
    else:
        result = await flow(AuthorizeRequest(params, dict(request.cookies), client_info(request)))
    if isinstance(result, ErrorPage):
        return error_page(result.message)
    if isinstance(result, RedirectToClient):
        return _redirect(_location(result.redirect_uri, result.params))
    assert isinstance(result, Interact)
    return_to = "/oauth2/authorize?" + urlencode(result.params)
    page_params = {"return_to": return_to, "tenant": result.tenant.slug}
    for name in ("login_hint", "ui_locales"):
        if name in result.params:
            page_params[name] = result.params[name]
    return _redirect(f"{result.step.value}?{urlencode(page_params)}")


# --- consent -------------------------------------------------------------------------


def _authorize_params_of(return_to: str) -> dict[str, str] | None:
    parts = urlsplit(return_to)
    if parts.scheme or parts.netloc or parts.path != "/oauth2/authorize":
        return None
    return dict(parse_qsl(parts.query, keep_blank_values=True))


@pages.get(
    "/ui/consent",
    summary="The consent page of a third-party client",
    status=200,
    ok_description="an HTML page: the client, the scopes asked, Allow and Deny",
    document=False,
)
@inject
async def consent(
    request: web.Request,
    flow: AuthorizeFlow = Provide[Container.authorize_flow],
    grant: GrantConsent = Provide[Container.grant_consent],
    browsers: BrowserSessions = Provide[Container.browser_sessions],
    services: OAuthServices = Provide[Container.oauth_services],
) -> web.StreamResponse:
    return await _consent(request, flow, grant, browsers, services)


@pages.post("/ui/consent", summary="Allow or deny a client", status=303, document=False)
@inject
async def consent_form(
    request: web.Request,
    flow: AuthorizeFlow = Provide[Container.authorize_flow],
    grant: GrantConsent = Provide[Container.grant_consent],
    browsers: BrowserSessions = Provide[Container.browser_sessions],
    services: OAuthServices = Provide[Container.oauth_services],
) -> web.StreamResponse:
    return await _consent(request, flow, grant, browsers, services)


async def _consent(
    request: web.Request,
    flow: AuthorizeFlow,
    grant: GrantConsent,
    browsers: BrowserSessions,
    services: OAuthServices,
) -> web.StreamResponse:
    """The hosted pages render it (layout, language, CSRF, Origin check); the browser
    session is the one ``/oauth2/authorize`` reads."""
    from identity.entrypoints.pages.page import load_page

    page = await load_page(request)
    params = _authorize_params_of(page.return_to) if page.has_return_to else None
    if params is None:
        return error_page("This consent request is not valid.")
    found = await flow.client_and_redirect(params)
    if isinstance(found, ErrorPage):
        return error_page(found.message)
    client, tenant, redirect_uri = found
    browser = await browsers.signed_in(tenant.id, dict(request.cookies))
    if browser is None:
        return page.redirect(page.url("/ui/sign-in"))
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if request.method == "GET":
        return page.render(
            "consent.html",
            client_name=client.name,
            logo_url=client.logo_url if (client.logo_url or "").startswith("https://") else None,
            scopes=scopes,
            action=page.url("/ui/consent"),
        )
    form = await page.form()  # 403 for another site's post or a stale form
    if form.get("decision") == "allow":
        await grant(tenant, browser, client, scopes, client_info(request))
        back = dict(params)
        prompts = set(back.pop("prompt", "").split()) - {"consent"}
        if prompts:
            back["prompt"] = " ".join(sorted(prompts))
        return page.redirect("/oauth2/authorize?" + urlencode(back))
    denied = {
        "error": "access_denied",
        "error_description": "the user denied the request",
        "iss": services.settings.issuer,
    }
    if "state" in params:
        denied["state"] = params["state"]
    return page.redirect(_location(redirect_uri, denied))


# --- userinfo, revoke, introspect ----------------------------------------------------


@attrs.frozen
class UserInfoView:
    """OpenID Connect UserInfo: `sub` and the claims of the token's scopes."""

    sub: str
    email: str | None = d.out("with `email`", omit_if_none=True)
    email_verified: bool | None = d.out("with `email`", omit_if_none=True)
    name: str | None = d.out("with `profile`", omit_if_none=True)


@attrs.frozen
class TokenIntrospectionView:
    """RFC 7662: `{"active": false}`, or the claims of a live access token."""

    active: bool
    token_type: str | None = d.out("`Bearer`", omit_if_none=True)
    sub: str | None = d.out("the user, or the client for client_credentials", omit_if_none=True)
    client_id: str | None = d.out("the client the token was issued to", omit_if_none=True)
    scope: str | None = d.out("space-separated scopes", omit_if_none=True)
    aud: str | None = d.out("the audience (RFC 8707 resource)", omit_if_none=True)
    exp: int | None = d.out("expiry", omit_if_none=True)
    iat: int | None = d.out("issue time", omit_if_none=True)


def _bearer_error(error: str, status: int, description: str) -> web.Response:
    response = _json({"error": error, "error_description": description}, status)
    response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


@endpoints.get(
    "/oauth2/userinfo",
    summary="OpenID Connect UserInfo",
    ok=UserInfoView,
    ok_description="`sub` and the claims of the token's scopes",
)
@inject
async def oauth_userinfo(
    request: web.Request, tokens: ClientTokens = Provide[Container.client_tokens]
) -> web.StreamResponse:
    return await _userinfo(request, tokens)


@endpoints.post("/oauth2/userinfo", summary="OpenID Connect UserInfo (POST)", ok=UserInfoView)
@inject
async def oauth_userinfo_form(
    request: web.Request, tokens: ClientTokens = Provide[Container.client_tokens]
) -> web.StreamResponse:
    return await _userinfo(request, tokens)


async def _userinfo(request: web.Request, tokens: ClientTokens) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return _bearer_error("invalid_token", 401, "a Bearer access token is required")
    try:
        live = await tokens.live_access(header[7:].strip())
    except InvalidTokenError:
        return _bearer_error("invalid_token", 401, "the access token is not valid")
    scopes = tuple(str(live.claims.get("scope", "")).split())
    if live.account is None or "openid" not in scopes:
        return _bearer_error("insufficient_scope", 403, "the token lacks the openid scope")
    return _json({"sub": str(live.account.id), **user_claims(live.account, scopes)})


@attrs.frozen
class RevokeBody(ClientAuthFields):
    token: TokenField = None
    token_type_hint: TokenHint = None


@endpoints.post(
    "/oauth2/revoke",
    summary="Token revocation (RFC 7009)",
    description="Either token ends the session it belongs to for this client.",
    body=RevokeBody,
    forms=True,
    status=200,
)
@inject
async def oauth_revoke(
    request: web.Request,
    body: RevokeBody,
    authenticate: AuthenticateClient = Provide[Container.authenticate_client],
    tokens: ClientTokens = Provide[Container.client_tokens],
) -> web.StreamResponse:
    who = await authenticate(_credentials(request, body))
    if body.token is None:
        raise invalid_request("token is required")
    await tokens.revoke(who, body.token, client_info(request))
    return _json({})


@attrs.frozen
class IntrospectBody(ClientAuthFields):
    token: TokenField = None
    token_type_hint: TokenHint = None


@endpoints.post(
    "/oauth2/introspect",
    summary="Token introspection (RFC 7662)",
    description="Client authentication, or an API key with `tokens:introspect` as Bearer.",
    body=IntrospectBody,
    forms=True,
    ok=TokenIntrospectionView,
)
@inject
async def oauth_introspect(
    request: web.Request,
    body: IntrospectBody,
    authenticate: AuthenticateClient = Provide[Container.authenticate_client],
    api_keys: AuthenticateApiKey = Provide[Container.authenticate_api_key],
    tokens: ClientTokens = Provide[Container.client_tokens],
    resolve: ResolveTenant = Provide[Container.resolve_tenant],
    identity_tokens: Introspect = Provide[Container.introspect],
) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        try:
            principal = await api_keys(header[7:].strip())
            principal.require(Scope.TOKENS_INTROSPECT)
        except InvalidApiKeyError:
            raise OAuthProtocolError("invalid_client", "unknown API key", 401) from None
        except InsufficientScopeError:
            raise OAuthProtocolError(
                "insufficient_scope", "the key lacks tokens:introspect", 403
            ) from None
        tenant = await resolve.by_id(principal.tenant_id)
    else:
        tenant = (await authenticate(_credentials(request, body))).tenant
    if body.token is None:
        raise invalid_request("token is required")
    try:
        live = await tokens.live_access(body.token)
    except InvalidTokenError:
        # Not a client's token: perhaps an access token of the JSON API (section 12).
        own = (await identity_tokens(IntrospectToken(tenant, body.token))).claims
        if own is None:
            return _json({"active": False})
        return _json(
            {
                "active": True,
                "token_type": "access",
                "sub": str(own.subject),
                "tid": str(own.tenant_id),
                "sid": str(own.session_id),
                "exp": int(own.expires_at.timestamp()),
                "iat": int(own.issued_at.timestamp()),
                "aal": own.aal,
                "amr": list(own.amr),
                "email": own.email,
            }
        )
    claims = live.claims
    if claims.get("tid") != str(tenant.id):
        return _json({"active": False})
    answer: dict[str, Any] = {
        key: claims[key]
        for key in (
            "sub",
            "client_id",
            "scope",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "tid",
            "sid",
            "auth_time",
            "acr",
            "amr",
        )
        if key in claims
    }
    return _json({"active": True, "token_type": "Bearer", **answer})


# --- RP-initiated logout -------------------------------------------------------------


@pages.get(
    "/oauth2/logout",
    summary="RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)",
    description="`id_token_hint` and/or `client_id`, `post_logout_redirect_uri` (registered, "
    "exact) and `state`: ends the browser session and the client sessions opened from it.",
    status=200,
    ok_description="a signed-out page (when no post-logout URI was given)",
    redirect="the registered post_logout_redirect_uri, with `state`",
)
@inject
async def oauth_logout(
    request: web.Request, use_case: RpInitiatedLogout = Provide[Container.rp_logout]
) -> web.StreamResponse:
    return await _logout(request, use_case)


@pages.post("/oauth2/logout", summary="RP-initiated logout (form post)", status=200)
@inject
async def oauth_logout_form(
    request: web.Request, use_case: RpInitiatedLogout = Provide[Container.rp_logout]
) -> web.StreamResponse:
    return await _logout(request, use_case)


async def _logout(request: web.Request, use_case: RpInitiatedLogout) -> web.StreamResponse:
    params, repeated = await _authorize_params(request)
    if repeated or any(len(value) > _LONG for value in params.values()):
        return error_page("This sign-out request is not valid.")
    try:
        done = await use_case(
            LogoutRequest(
                id_token_hint=params.get("id_token_hint"),
                client_id=params.get("client_id"),
                post_logout_redirect_uri=params.get("post_logout_redirect_uri"),
                state=params.get("state"),
                cookies=dict(request.cookies),
            ),
            client_info(request),
        )
    except OAuthProtocolError as error:
        return error_page(f"This sign-out request is not valid: {error.description}.")
    if done.redirect_uri is None:
        return plain_page("You are signed out", "<p>You can close this window.</p>")
    back = {"state": done.state} if done.state is not None else {}
    return _redirect(_location(done.redirect_uri, back))


# --- grants (self-service) -----------------------------------------------------------

grants = d.Endpoints(tag="sessions")
GRANT_CLIENT = d.path_text("client_id", "the client's id", pattern="^[0-9a-f-]{1,64}$")


@attrs.frozen
class GrantItem:
    """An application the user let in, and what it may see."""

    client_id: str
    client_name: str
    scopes: list[str]
    granted_at: datetime


@attrs.frozen
class GrantList:
    """The user's grants to third-party applications, oldest first."""

    items: list[GrantItem]


@grants.get(
    "/auth/grants",
    summary="The applications you let in (section 17)",
    ok=GrantList,
    auth=d.BEARER,
)
@inject
async def list_grants(
    request: web.Request, use_case: UserGrants = Provide[Container.user_grants]
) -> GrantList:
    principal = d.user(request)
    found = await use_case.list(principal.tenant.id, principal.account.id)
    return GrantList(
        [GrantItem(g.client_id, g.client_name, list(g.scopes), g.granted_at) for g in found]
    )


@grants.delete(
    "/auth/grants/{client_id}",
    summary="Revoke an application: forget the consent and end its sessions",
    path_params=(GRANT_CLIENT,),
    auth=d.BEARER,
    errors=("not_found",),
)
@inject
async def revoke_grant(
    request: web.Request, client_id: str, use_case: UserGrants = Provide[Container.user_grants]
) -> None:
    principal = d.user(request)
    await use_case.revoke(
        principal.tenant.id,
        principal.account.id,
        client_id,
        client_info(request),
        by_session_id=principal.session_id,
    )


# --- dynamic client registration (RFC 7591) ------------------------------------------

registration = d.Endpoints(tag="oauth", oauth_errors=True)


def _metadata_error(description: str) -> OAuthProtocolError:
    return OAuthProtocolError("invalid_client_metadata", description)


def _strings(document: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _metadata_error(f"{name} is a list of strings")
    if len(value) > 20 or any(len(v) > 2048 for v in value):
        raise _metadata_error(f"{name} is too long")
    return tuple(value)


def _string(document: Mapping[str, Any], name: str, max_length: int = 2048) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _metadata_error(f"{name} is a string of at most {max_length} characters")
    return value


def registration_spec(document: Mapping[str, Any]) -> ClientSpec:
    """RFC 7591 client metadata as a registration of a third-party client."""
    method = _string(document, "token_endpoint_auth_method", 64) or "client_secret_basic"
    try:
        auth_method = AuthMethod(method)
    except ValueError:
        raise _metadata_error("unsupported token_endpoint_auth_method") from None
    redirect_uris = _strings(document, "redirect_uris") or ()
    for uri in redirect_uris:
        if not (uri.startswith("https://") or is_loopback_redirect(uri)):
            raise OAuthProtocolError(
                "invalid_redirect_uri", "redirect URIs are https, or loopback for native apps"
            )
    grant_types = _strings(document, "grant_types")
    response_types = _strings(document, "response_types")
    if response_types is not None and set(response_types) != {"code"}:
        raise _metadata_error("only the code response type is supported")
    try:
        grants = tuple(GrantType(g) for g in grant_types) if grant_types else None
    except ValueError:
        raise _metadata_error("unsupported grant type") from None
    scope = _string(document, "scope")
    jwks = document.get("jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise _metadata_error("jwks is a JWK set")
    return ClientSpec(
        name=_string(document, "client_name", 200) or "Unnamed application",
        redirect_uris=redirect_uris,
        type=ClientType.PUBLIC if auth_method is AuthMethod.NONE else ClientType.CONFIDENTIAL,
        first_party=False,
        post_logout_redirect_uris=_strings(document, "post_logout_redirect_uris") or (),
        grant_types=grants,
        allowed_scopes=tuple(scope.split()) if scope else None,
        token_endpoint_auth_method=auth_method,
        jwks_uri=_string(document, "jwks_uri"),
        jwks=jwks,
        backchannel_logout_uri=_string(document, "backchannel_logout_uri"),
        id_token_signed_response_alg=_string(document, "id_token_signed_response_alg", 16)
        or "RS256",
        logo_url=_string(document, "logo_uri"),
        dynamically_registered=True,
    )


@attrs.frozen
class RegisteredClientView:
    """RFC 7591 §3.2.1: the registered metadata; `client_secret` shown this once."""

    client_id: str
    client_id_issued_at: int
    client_name: str
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
    scope: str
    id_token_signed_response_alg: str
    client_secret: str | None = d.out("confidential clients; shown once", omit_if_none=True)
    client_secret_expires_at: int | None = d.out("0: never", omit_if_none=True)
    post_logout_redirect_uris: list[str] | None = d.out(omit_if_none=True)
    jwks_uri: str | None = d.out(omit_if_none=True)
    backchannel_logout_uri: str | None = d.out(omit_if_none=True)
    logo_uri: str | None = d.out(omit_if_none=True)


@registration.post(
    "/oauth2/register",
    summary="Dynamic client registration (RFC 7591)",
    description="JSON client metadata. `IDENTITY_OAUTH_REGISTRATION`: `off` (404), `token` "
    "(an API key with `clients:manage` as Bearer) or `open`. Registered clients are third "
    "party: consent always.",
    status=201,
    ok=RegisteredClientView,
    errors=("not_found",),
)
@inject
async def register_client(
    request: web.Request,
    settings: Settings = Provide[Container.settings],
    clients: ClientAdmin = Provide[Container.client_admin],
    api_keys: AuthenticateApiKey = Provide[Container.authenticate_api_key],
    resolve: ResolveTenant = Provide[Container.resolve_tenant],
) -> web.StreamResponse:
    mode = settings.oauth_registration
    if mode == "off":
        raise web.HTTPNotFound()
    if mode == "token":
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            raise OAuthProtocolError("invalid_token", "an API key with clients:manage", 401)
        try:
            principal = await api_keys(header[7:].strip())
            principal.require(Scope.CLIENTS_MANAGE)
        except (InvalidApiKeyError, InsufficientScopeError):
            raise OAuthProtocolError(
                "invalid_token", "an API key with clients:manage", 401
            ) from None
        tenant = await resolve.by_id(principal.tenant_id)
    else:
        tenant = await resolve(request.headers.get("X-Tenant"))
    try:
        document = await read_json_object(request)
    except Problem:
        raise _metadata_error("the body is a JSON object of client metadata") from None
    try:
        new = await clients.create(tenant, registration_spec(document), client_info(request))
    except InvalidClientMetadataError as error:
        code = "invalid_redirect_uri" if "redirect" in error.field else "invalid_client_metadata"
        raise OAuthProtocolError(code, error.message) from None
    client = new.client
    view = RegisteredClientView(
        client_id=client.client_id,
        client_id_issued_at=int(client.created_at.timestamp()),
        client_name=client.name,
        redirect_uris=list(client.redirect_uris),
        grant_types=[g.value for g in client.grant_types],
        response_types=["code"],
        token_endpoint_auth_method=client.token_endpoint_auth_method.value,
        scope=" ".join(client.allowed_scopes),
        id_token_signed_response_alg=client.id_token_signed_response_alg,
        client_secret=new.secret,
        client_secret_expires_at=0 if new.secret is not None else None,
        post_logout_redirect_uris=list(client.post_logout_redirect_uris) or None,
        jwks_uri=client.jwks_uri,
        backchannel_logout_uri=client.backchannel_logout_uri,
        logo_uri=client.logo_url,
    )
    return _json(d.serialise(view), 201)
