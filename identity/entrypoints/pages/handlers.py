"""The page handlers: parse the form, call the API's use case, render or redirect.

They call the same use cases as the JSON handlers (enumeration safety, rate
limits, codes, MFA and events hold as on the API) and bind the session a
sign-in opens to the browser (``StartBrowserSession``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from identity.application import account_codes, account_passwords, mfa
from identity.application.first_factor import MfaRequired, SignInResult
from identity.application.tokens import TokenPair
from identity.domain.errors import DomainError
from identity.domain.otp import OtpPurpose
from identity.entrypoints.http.problems import Problem, problem_for
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages import messages, requests
from identity.entrypoints.pages.forms import Form
from identity.entrypoints.pages.page import Page, load_page
from identity.entrypoints.pages.security import browser_cookie_name, mfa_cookie_name

routes = web.RouteTableDef()

SIGN_IN = "/ui/sign-in"


def as_problem(error: Exception) -> Problem:
    if isinstance(error, Problem):
        return error
    mapped = problem_for(error)
    if mapped is None:
        raise error
    return mapped


def form_error(
    page: Page, template: str, error: Exception, form: Form, **context: Any
) -> web.Response:
    """The form again, with the API's error next to its field (a 429 gets its own page)."""
    problem = as_problem(error)
    if problem.status == 429:
        raise problem
    values = {name: value for name, value in form.fields.items() if "password" not in name}
    return page.render(
        template,
        status=problem.status,
        error=messages.ERRORS.get(problem.code, messages.FALLBACK_ERROR),
        field_errors=messages.field_errors(problem),
        values=values,
        **context,
    )


async def finish_sign_in(page: Page, result: SignInResult) -> web.Response:
    """A first or second factor passed: a browser session, or the second-factor page."""
    assert page.tenant is not None
    slug = page.tenant.slug
    if isinstance(result, MfaRequired):
        page.set_cookie(mfa_cookie_name(slug), result.mfa_token, result.expires_in, path="/ui/")
        return page.redirect(page.url("/ui/mfa"))
    return await start_browser_session(page, result)


async def start_browser_session(page: Page, pair: TokenPair) -> web.Response:
    assert page.tenant is not None
    slug = page.tenant.slug
    if page.browser_value:
        # Another sign-in in this browser: the session it held ends first.
        await page.container.end_browser_session()(
            page.tenant, page.browser_value, client_info(page.request)
        )
    value = await page.container.start_browser_session()(pair)
    page.set_cookie(browser_cookie_name(slug), value, pair.refresh_token_expires_in)
    page.clear_cookie(mfa_cookie_name(slug), path="/ui/")
    return page.redirect(page.next_url)


# --- sign-in ---------------------------------------------------------------------------


@routes.get(SIGN_IN)
async def sign_in(request: web.Request) -> web.Response:
    page = await load_page(request)
    if page.principal is not None and request.query.get("prompt") != "login":
        return page.redirect(page.next_url)
    notice = messages.NOTICES.get(request.query.get("notice", ""))
    return page.render("sign_in.html", values={}, notice=notice, providers=providers(page))


@routes.post(SIGN_IN)
async def sign_in_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    context = {"providers": providers(page)}
    if form.get("action") == "code":
        return await send_code(page, form, OtpPurpose.LOGIN, "sign_in.html", context)
    try:
        fields = form.parse(requests.PasswordSignIn)
        command = account_passwords.LogIn(
            tenant=page.known_tenant,
            email=fields.email,
            password=fields.password,
            client=client_info(request),
        )
        result = await page.container.log_in()(command)
    except (DomainError, Problem) as error:
        return form_error(page, "sign_in.html", error, form, **context)
    return await finish_sign_in(page, result)


def providers(page: Page) -> list[dict[str, str]]:
    """A button per configured provider (the provider sign-in of section 13)."""
    return []


async def send_code(
    page: Page, form: Form, purpose: OtpPurpose, template: str, context: dict[str, Any]
) -> web.Response:
    """Ask for a code (the same answer whether or not the address has an account), then
    show the code form."""
    try:
        fields = form.parse(requests.EmailOnly)
        command = account_codes.RequestCode(
            tenant=page.known_tenant, email=fields.email, purpose=purpose
        )
        sent = await page.container.request_otp()(command)
    except (DomainError, Problem) as error:
        return form_error(page, template, error, form, **context)
    next_template = "reset_password.html" if purpose is OtpPurpose.PASSWORD_RESET else "verify.html"
    return page.render(
        next_template,
        values={"email": sent.email, "purpose": purpose.value},
        notice=messages.NOTICES["code_sent"],
    )


# --- sign-up and codes ---------------------------------------------------------------


@routes.get("/ui/sign-up")
async def sign_up(request: web.Request) -> web.Response:
    page = await load_page(request)
    return page.render("sign_up.html", values={})


@routes.post("/ui/sign-up")
async def sign_up_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    try:
        fields = form.parse(requests.SignUp)
        command = account_codes.Register(
            tenant=page.known_tenant,
            email=fields.email,
            password=fields.password,
            full_name=fields.full_name,
            client=client_info(request),
            locale=page.locale,
        )
        sent = await page.container.register_user()(command)
    except (DomainError, Problem) as error:
        return form_error(page, "sign_up.html", error, form)
    return page.render(
        "verify.html",
        values={"email": sent.email, "purpose": OtpPurpose.VERIFICATION.value},
        notice=messages.NOTICES["code_sent"],
    )


CODE_PURPOSES = (OtpPurpose.VERIFICATION, OtpPurpose.LOGIN)


@routes.get("/ui/verify")
async def verify(request: web.Request) -> web.Response:
    page = await load_page(request)
    purpose = request.query.get("purpose", OtpPurpose.VERIFICATION.value)
    if purpose not in {p.value for p in CODE_PURPOSES}:
        purpose = OtpPurpose.VERIFICATION.value
    email = request.query.get("email", "")[:320]
    return page.render("verify.html", values={"email": email, "purpose": purpose})


@routes.post("/ui/verify")
async def verify_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    if form.get("action") == "resend":
        try:
            purpose = form.parse(requests.NewCode).purpose
        except Problem as error:
            return form_error(page, "verify.html", error, form)
        return await send_code(page, form, purpose, "verify.html", {})
    try:
        fields = form.parse(requests.CodeCheck)
        command = account_codes.VerifyCode(
            tenant=page.known_tenant,
            email=fields.email,
            code=fields.otp_code,
            purpose=fields.purpose,
            client=client_info(request),
        )
        result = await page.container.verify_otp()(command)
    except (DomainError, Problem) as error:
        return form_error(page, "verify.html", error, form)
    return await finish_sign_in(page, result)


# --- forgotten password --------------------------------------------------------------


@routes.get("/ui/forgot-password")
async def forgot_password(request: web.Request) -> web.Response:
    page = await load_page(request)
    return page.render("forgot_password.html", values={})


@routes.post("/ui/forgot-password")
async def forgot_password_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    return await send_code(page, form, OtpPurpose.PASSWORD_RESET, "forgot_password.html", {})


@routes.get("/ui/reset-password")
async def reset_password(request: web.Request) -> web.Response:
    page = await load_page(request)
    email = request.query.get("email", "")[:320]
    return page.render("reset_password.html", values={"email": email})


@routes.post("/ui/reset-password")
async def reset_password_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    try:
        fields = form.parse(requests.PasswordReset)
        command = account_passwords.ResetPassword(
            tenant=page.known_tenant,
            email=fields.email,
            code=fields.otp_code,
            new_password=fields.new_password,
            client=client_info(request),
        )
        await page.container.reset_password()(command)
    except (DomainError, Problem) as error:
        return form_error(page, "reset_password.html", error, form)
    return page.redirect(page.url(SIGN_IN, notice="password_reset"))


# --- second factor -------------------------------------------------------------------


def _mfa_token(page: Page) -> str | None:
    token = page.request.cookies.get(mfa_cookie_name(page.tenant_slug))
    return token if token and len(token) <= 128 else None


@routes.get("/ui/mfa")
async def second_factor(request: web.Request) -> web.Response:
    page = await load_page(request)
    if _mfa_token(page) is None:
        return page.redirect(page.url(SIGN_IN, notice="expired"))
    recovery = request.query.get("method") == "recovery"
    return page.render("mfa.html", values={}, recovery=recovery)


@routes.post("/ui/mfa")
async def second_factor_post(request: web.Request) -> web.Response:
    page = await load_page(request)
    form = await page.form()
    token = _mfa_token(page)
    if token is None:
        return page.redirect(page.url(SIGN_IN, notice="expired"))
    recovery = "recovery_code" in form.fields
    try:
        fields = form.parse(requests.SecondFactor)
        proof = mfa.SecondFactorProof(
            code=fields.code,
            recovery_code=fields.recovery_code.strip() if fields.recovery_code else None,
        )
        command = mfa.VerifySecondFactor(
            tenant=page.known_tenant, mfa_token=token, proof=proof, client=client_info(request)
        )
        pair = await page.container.verify_mfa()(command)
    except (DomainError, Problem) as error:
        problem = as_problem(error)
        if problem.code == "invalid_token":
            page.clear_cookie(mfa_cookie_name(page.tenant_slug), path="/ui/")
            return page.redirect(page.url(SIGN_IN, notice="expired"))
        return form_error(page, "mfa.html", error, form, recovery=recovery)
    return await start_browser_session(page, pair)


# --- sign-out and account ------------------------------------------------------------


@routes.post("/ui/sign-out")
async def sign_out(request: web.Request) -> web.Response:
    page = await load_page(request)
    await page.form()
    assert page.tenant is not None
    await page.container.end_browser_session()(
        page.tenant, page.browser_value, client_info(request)
    )
    page.clear_cookie(browser_cookie_name(page.tenant.slug))
    if page.has_return_to:
        return page.redirect(page.next_url)
    return page.redirect(page.url(SIGN_IN, notice="signed_out"))


async def brand_css(request: web.Request) -> web.Response:
    """The tenant's colours as CSS variables: the pages allow no inline style."""
    page = await load_page(request, authenticate=False)
    primary = page.branding.primary_color
    css = f":root{{--primary:{primary};--on-primary:{page.branding.on_primary}}}\n"
    response = web.Response(text=css, content_type="text/css")
    response.headers["Cache-Control"] = "max-age=300"
    return response
