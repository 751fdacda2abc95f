"""The account page and the forms it posts: each calls the API's use case.

Every handler needs a browser session (else: to the sign-in page and back).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import segno
from aiohttp import web
from markupsafe import Markup

from identity.application import admin, self_service, sessions
from identity.application.account_codes import RequestCode
from identity.application.sessions import Principal
from identity.domain.errors import DomainError
from identity.domain.otp import OtpPurpose
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.handlers.self_service import export_view
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages import messages, requests
from identity.entrypoints.pages import providers as provider_flows
from identity.entrypoints.pages.forms import Form
from identity.entrypoints.pages.handlers import SIGN_IN, as_problem
from identity.entrypoints.pages.page import Page, load_page
from identity.entrypoints.pages.security import browser_cookie_name

routes = web.RouteTableDef()

ACCOUNT = "/ui/account"
AccountHandler = Callable[[Page, Principal], Awaitable[web.Response]]


def signed_in(handler: AccountHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page_handler(request: web.Request) -> web.Response:
        page = await load_page(request)
        if page.principal is None:
            back = page.url(ACCOUNT, return_to=None)
            return page.redirect(page.url(SIGN_IN, return_to=back))
        return await handler(page, page.principal)

    return page_handler


async def account_view(
    page: Page, principal: Principal, *, status: int = 200, **context: Any
) -> web.Response:
    container = page.container
    found = await container.list_sessions()(principal)
    linked = await container.list_identities()(principal.tenant, principal.account)
    own_passkeys = await container.list_passkeys()(principal)
    applications = await container.user_grants().list(principal.tenant.id, principal.account.id)
    notice = messages.NOTICES.get(page.request.query.get("notice", ""))
    context.setdefault("notice", notice)
    linked_names = {link.provider for link in linked}
    link_buttons = [
        button
        for name, button in zip(
            provider_flows.configured(page),
            provider_flows.buttons(page, "/ui/account/identities/link/"),
            strict=True,
        )
        if name not in linked_names
    ]
    # Section 19: the caller's organizations (see pages/organizations.py).
    from identity.entrypoints.pages.organizations import organizations_context

    context.update(await organizations_context(page, principal))
    return page.render(
        "account.html",
        status=status,
        sessions=found,
        identities=linked,
        passkeys=own_passkeys,
        applications=applications,
        link_providers=link_buttons,
        account=principal.account,
        values=context.pop("values", {}),
        **context,
    )


async def account_error(
    page: Page, principal: Principal, error: Exception, form: Form, section: str
) -> web.Response:
    problem = as_problem(error)
    if problem.status == 429:
        raise problem
    return await account_view(
        page,
        principal,
        status=problem.status,
        error=messages.ERRORS.get(problem.code, messages.FALLBACK_ERROR),
        field_errors={
            f"{section}.{name}": message for name, message in messages.field_errors(problem).items()
        },
        section=section,
    )


def done(page: Page, notice: str) -> web.Response:
    return page.redirect(page.url(ACCOUNT, notice=notice, return_to=None))


@routes.get(ACCOUNT)
@signed_in
async def account(page: Page, principal: Principal) -> web.Response:
    return await account_view(page, principal)


@routes.post("/ui/account/profile")
@signed_in
async def profile(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        name = form.parse(requests.Profile).full_name.strip()
        await page.container.update_user()(
            admin.ChangeUser(
                tenant=principal.tenant,
                user_id=principal.account.id,
                full_name=name,
                client=client_info(page.request),
            )
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "profile")
    return done(page, "profile_saved")


@routes.post("/ui/account/password")
@signed_in
async def change_password(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(requests.PasswordChange)
        command = sessions.ChangePassword(
            principal=principal,
            current_password=fields.current_password,
            new_password=fields.new_password,
            client=client_info(page.request),
        )
        await page.container.change_password()(command)
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "password")
    return done(page, "password_changed")


@routes.post("/ui/account/sessions/end")
@signed_in
async def end_session(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        session_id = form.parse(requests.SessionChoice).session_id
        if session_id == principal.session_id:
            raise Problem(422, "validation_error", "Use sign out for this browser")
        await page.container.revoke_session()(principal, session_id, client_info(page.request))
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "sessions")
    return done(page, "session_ended")


@routes.post("/ui/account/sessions/end-others")
@signed_in
async def end_other_sessions(page: Page, principal: Principal) -> web.Response:
    await page.form()
    container = page.container
    for session in await container.list_sessions()(principal):
        if session.id != principal.session_id:
            try:
                await container.revoke_session()(principal, session.id, client_info(page.request))
            except DomainError:
                continue  # ended meanwhile
    return done(page, "sessions_ended")


@routes.post("/ui/account/applications/revoke")
@signed_in
async def revoke_application(page: Page, principal: Principal) -> web.Response:
    """Disconnect an application: forget its consent, end its sessions (section 17)."""
    form = await page.form()
    try:
        client_id = form.parse(requests.ApplicationChoice).client_id
        await page.container.user_grants().revoke(
            principal.tenant.id,
            principal.account.id,
            client_id,
            client_info(page.request),
            by_session_id=principal.session_id,
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "applications")
    return done(page, "application_revoked")


@routes.post("/ui/account/identities/unlink")
@signed_in
async def unlink(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        provider = form.parse(requests.ProviderChoice).provider
        await page.container.unlink_identity()(
            principal.tenant, principal.account.id, provider, client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "identities")
    return done(page, "unlinked")


# --- two-step sign-in ------------------------------------------------------------------


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG drawn here (never by another site)."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", border=2)
    return Markup(svg)  # noqa: S704 - segno's own SVG markup of our own URI


@routes.post("/ui/account/mfa/enroll")
@signed_in
async def mfa_enroll(page: Page, principal: Principal) -> web.Response:
    await page.form()
    try:
        enrollment = await page.container.enroll_totp()(principal)
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, Form({}), "mfa")
    return page.render(
        "mfa_enroll.html", qr=qr_svg(enrollment.otpauth_uri), secret=enrollment.secret
    )


@routes.post("/ui/account/mfa/confirm")
@signed_in
async def mfa_confirm(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        code = form.parse(requests.TotpCode).code
        codes = await page.container.confirm_totp()(principal, code, client_info(page.request))
    except (DomainError, Problem) as error:
        problem = as_problem(error)
        if problem.status == 429:
            raise problem from None
        # The pending factor stays: enrol again shows a new one.
        return await account_error(page, principal, error, form, "mfa")
    return page.render("recovery_codes.html", codes=codes.codes)


@routes.post("/ui/account/mfa/recovery-codes")
@signed_in
async def mfa_recovery_codes(page: Page, principal: Principal) -> web.Response:
    await page.form()
    try:
        codes = await page.container.renew_recovery_codes()(principal)
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, Form({}), "mfa")
    return page.render("recovery_codes.html", codes=codes.codes)


@routes.post("/ui/account/mfa/disable")
@signed_in
async def mfa_disable(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        code = form.parse(requests.TotpCode).code
        await page.container.disable_totp()(principal, code, client_info(page.request))
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "mfa_off")
    return done(page, "mfa_disabled")


# --- my data and deleting the account ------------------------------------------------------


@routes.get("/ui/account/export")
@signed_in
async def export(page: Page, principal: Principal) -> web.Response:
    found = await page.container.export_own_account()(principal)
    data = json.dumps(d.serialise(export_view(principal, found)), indent=2)
    response = web.Response(text=data, content_type="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/ui/account/delete/code")
@signed_in
async def delete_code(page: Page, principal: Principal) -> web.Response:
    await page.form()
    await page.container.request_otp()(
        RequestCode(principal.tenant, principal.account.email, OtpPurpose.ACCOUNT_DELETION)
    )
    return done(page, "code_sent")


@routes.post("/ui/account/delete")
@signed_in
async def delete(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(requests.Deletion)
        await page.container.delete_own_account()(
            self_service.DeleteAccount(
                principal, fields.password, fields.otp_code, client_info(page.request)
            )
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, "delete")
    page.clear_cookie(browser_cookie_name(principal.tenant.slug))
    return page.redirect(page.url(SIGN_IN, notice="deleted", return_to=None))
