"""Passkeys on the hosted pages: sign in with one, and add, rename and remove them.

The browser runs the ceremonies (``static/passkeys.js``) with the API's options;
its answer comes back in an ordinary form post, checked like every form (origin
and CSRF), and the same use cases as the JSON API judge it. A passkey sign-in
becomes a browser session like any other sign-in.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from aiohttp import web

from identity.application import passkeys
from identity.application.sessions import Principal
from identity.domain.errors import DomainError
from identity.domain.passkeys import WebAuthnInvalidError
from identity.entrypoints.http.handlers.passkeys import RenameBody, checked_name
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages import requests
from identity.entrypoints.pages.account import account_error, done, signed_in
from identity.entrypoints.pages.forms import Form
from identity.entrypoints.pages.handlers import SIGN_IN, form_error, providers
from identity.entrypoints.pages.page import Page, load_page
from identity.entrypoints.pages.signing import start_browser_session

routes = web.RouteTableDef()

MAX_CREDENTIAL_CHARS = 48 * 1024  # inside the 64 KiB body limit


def _ceremony(form: Form) -> tuple[str, dict[str, Any]]:
    """The flow id and the credential JSON the script posted; a malformed one is a failed
    WebAuthn check (400), as on the API."""
    flow_id = form.get("flow_id") or ""
    raw = form.get("credential") or ""
    if not flow_id or len(flow_id) > 128 or not raw or len(raw) > MAX_CREDENTIAL_CHARS:
        raise WebAuthnInvalidError("no ceremony in the form")
    try:
        credential = json.loads(raw)
    except (ValueError, RecursionError):
        raise WebAuthnInvalidError("credential not JSON") from None
    if not isinstance(credential, dict):
        raise WebAuthnInvalidError("credential not an object")
    return flow_id, credential


@routes.post(f"{SIGN_IN}/passkey")
async def sign_in_with_passkey(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    try:
        flow_id, credential = _ceremony(form)
        pair = await page.container.finish_passkey_login()(
            passkeys.FinishLogin(page.known_tenant, flow_id, credential, client_info(request))
        )
    except (DomainError, Problem) as error:
        return form_error(page, "sign_in.html", error, form, providers=providers(page))
    return await start_browser_session(page, pair)


@routes.post("/ui/account/passkeys/options")
async def add_passkey_options(request: web.Request) -> web.Response:
    """Creation options for the signed-in browser, as JSON for the script (CSRF-checked)."""
    page = await load_page(request)
    form = await page.form()
    del form
    if page.principal is None:
        raise Problem(401, "invalid_token", "Not signed in", "Sign in again.")
    flow = await page.container.start_passkey_registration()(page.principal)
    response = web.json_response({"flow_id": flow.flow_id, "publicKey": dict(flow.public_key)})
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/ui/account/passkeys/add")
@signed_in
async def add_passkey(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        name = checked_name(form.parse(requests.PasskeyNaming).name)  # as on the API
        flow_id, credential = _ceremony(form)
        await page.container.finish_passkey_registration()(
            passkeys.FinishRegistration(
                principal, flow_id, credential, name, client_info(page.request)
            )
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "passkey_add")
    return done(page, "passkey_added")


def _passkey_id(form: Form) -> UUID:
    try:
        return UUID(form.get("passkey_id") or "")
    except ValueError:
        raise Problem(404, "not_found", "Not found", "No such passkey.") from None


@routes.post("/ui/account/passkeys/rename")
@signed_in
async def rename_passkey(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        passkey_id = _passkey_id(form)
        # The API's own body and name check (trimmed, 1-64 characters).
        name = checked_name(form.parse(RenameBody).name)
        await page.container.rename_passkey()(principal, passkey_id, name)
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "passkey_rename")
    return done(page, "passkey_renamed")


@routes.post("/ui/account/passkeys/remove")
@signed_in
async def remove_passkey(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        await page.container.delete_passkey()(
            principal, _passkey_id(form), client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "passkey_remove")
    return done(page, "passkey_removed")
