"""Handlers of the account lifecycle: register, codes, login, password reset."""

from __future__ import annotations

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import account_codes, account_passwords
from identity.domain.otp import OtpPurpose
from identity.entrypoints.container import Container
from identity.entrypoints.http.bodies import read_body
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.views import client_info, code_sent_view, sign_in_view

routes = web.RouteTableDef()


@routes.post("/auth/register")
@inject
async def register(
    request: web.Request,
    use_case: account_codes.RegisterUser = Provide[Container.register_user],
) -> web.Response:
    body = await read_body(request)
    command = account_codes.Register(
        tenant=request_tenant(request),
        email=body.email(),
        password=body.optional_password("password"),
        full_name=body.optional_text("full_name", max_length=200),
        client=client_info(request),
    )
    body.check()
    return web.json_response(code_sent_view(await use_case(command)), status=202)


@inject
async def request_otp(
    request: web.Request,
    use_case: account_codes.RequestOtp = Provide[Container.request_otp],
) -> web.Response:
    body = await read_body(request)
    command = account_codes.RequestCode(
        tenant=request_tenant(request),
        email=body.email(),
        purpose=body.choice("purpose", OtpPurpose),
    )
    body.check()
    return web.json_response(code_sent_view(await use_case(command)), status=202)


routes.post("/auth/request-otp")(request_otp)
routes.post("/auth/resend-otp")(request_otp)  # alias kept for the reference service's clients


@routes.post("/auth/verify-otp")
@inject
async def verify_otp(
    request: web.Request,
    use_case: account_codes.VerifyOtp = Provide[Container.verify_otp],
) -> web.Response:
    body = await read_body(request)
    command = account_codes.VerifyCode(
        tenant=request_tenant(request),
        email=body.email(),
        code=body.code(),
        purpose=body.choice(
            "purpose", OtpPurpose, allowed=(OtpPurpose.VERIFICATION, OtpPurpose.LOGIN)
        ),
        client=client_info(request),
    )
    body.check()
    return web.json_response(sign_in_view(await use_case(command)))


@routes.post("/auth/reset-password")
@inject
async def reset_password(
    request: web.Request,
    use_case: account_passwords.ResetPasswordWithCode = Provide[Container.reset_password],
) -> web.Response:
    body = await read_body(request)
    command = account_passwords.ResetPassword(
        tenant=request_tenant(request),
        email=body.email(),
        code=body.code(),
        new_password=body.password("new_password"),
        client=client_info(request),
    )
    body.check()
    await use_case(command)
    return web.json_response({"message": "Password reset. Every session has been ended."})


@routes.post("/auth/login")
@inject
async def login(
    request: web.Request,
    use_case: account_passwords.LogInWithPassword = Provide[Container.log_in],
) -> web.Response:
    body = await read_body(request)
    command = account_passwords.LogIn(
        tenant=request_tenant(request),
        email=body.email(),
        password=body.password("password"),
        client=client_info(request),
    )
    body.check()
    return web.json_response(sign_in_view(await use_case(command)))
