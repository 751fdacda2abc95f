"""Handlers of the account lifecycle: register, codes, login, password reset."""

from __future__ import annotations

from typing import Annotated

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import accounts
from identity.domain.otp import OtpPurpose
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.views import (
    SIGNED_IN,
    CodeSentView,
    Message,
    MfaRequiredView,
    TokenResponse,
    client_info,
    signed_in,
)

endpoints = d.Endpoints(tag="accounts")

OtpCode = Annotated[str, d.Digits("the 6-digit code from the email", length=6)]
SIGNED_IN_DESCRIPTION = (
    "Signed in: a token pair; or, with MFA on, the `mfa_required` answer and no tokens."
)
CODE_SENT = "Accepted; a code is on its way if the address can receive it."


@attrs.frozen
class RegisterBody:
    email: d.EmailAddress
    password: Annotated[str, d.NewPassword()] | None = None
    full_name: Annotated[str, d.Text("a display name", max_length=200)] | None = None


@attrs.frozen
class CodeRequest:
    email: d.EmailAddress
    purpose: Annotated[OtpPurpose, d.Choice("what the code is for")]


@attrs.frozen
class VerifyCodeBody:
    email: d.EmailAddress
    otp_code: OtpCode
    purpose: Annotated[
        OtpPurpose,
        d.Choice("what the code is for", only=(OtpPurpose.VERIFICATION, OtpPurpose.LOGIN)),
    ]


@attrs.frozen
class ResetPasswordBody:
    email: d.EmailAddress
    otp_code: OtpCode
    new_password: Annotated[str, d.NewPassword()]


@attrs.frozen
class LoginBody:
    email: d.EmailAddress
    password: Annotated[str, d.Password()]


@endpoints.post(
    "/auth/register",
    operation_id="register",
    summary="Create an unverified account and email a verification code",
    description=(
        "The answer is the same whether the email is new, unverified or already "
        "verified. `password` may be left out for an account that signs in with "
        "emailed codes only."
    ),
    body=RegisterBody,
    ok=CodeSentView,
    status=202,
    ok_description=CODE_SENT,
)
@inject
async def register(
    request: web.Request,
    body: RegisterBody,
    use_case: accounts.RegisterUser = Provide[Container.register_user],
) -> CodeSentView:
    command = accounts.Register(
        tenant=request_tenant(request),
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        client=client_info(request),
    )
    return CodeSentView.of(await use_case(command))


@endpoints.post(
    "/auth/request-otp",
    operation_id="requestOtp",
    summary="Email a one-time code",
    description="The same answer whether or not the account exists; a new code replaces the "
    "previous one for the email and purpose.",
    body=CodeRequest,
    ok=CodeSentView,
    status=202,
    ok_description=CODE_SENT,
)
@endpoints.post(
    # The alias kept for the reference service's clients.
    "/auth/resend-otp",
    operation_id="resendOtp",
    summary="Email a one-time code (alias of request-otp)",
    description="As `request-otp`.",
    body=CodeRequest,
    ok=CodeSentView,
    status=202,
    ok_description=CODE_SENT,
)
@inject
async def request_otp(
    request: web.Request,
    body: CodeRequest,
    use_case: accounts.RequestOtp = Provide[Container.request_otp],
) -> CodeSentView:
    command = accounts.RequestCode(
        tenant=request_tenant(request), email=body.email, purpose=body.purpose
    )
    return CodeSentView.of(await use_case(command))


@endpoints.post(
    "/auth/verify-otp",
    operation_id="verifyOtp",
    summary="Sign in with an emailed code",
    description="`verification` activates the account and signs in; `login` signs in "
    "without a password (and activates an unverified account).",
    body=VerifyCodeBody,
    ok=SIGNED_IN,
    ok_description=SIGNED_IN_DESCRIPTION,
    errors=("otp_invalid", "account_disabled"),
)
@inject
async def verify_otp(
    request: web.Request,
    body: VerifyCodeBody,
    use_case: accounts.VerifyOtp = Provide[Container.verify_otp],
) -> TokenResponse | MfaRequiredView:
    command = accounts.VerifyCode(
        tenant=request_tenant(request),
        email=body.email,
        code=body.otp_code,
        purpose=body.purpose,
        client=client_info(request),
    )
    return signed_in(await use_case(command))


@endpoints.post(
    "/auth/reset-password",
    operation_id="resetPassword",
    summary="Set a new password with a `password_reset` code",
    description="Every session of the account is ended.",
    body=ResetPasswordBody,
    ok=Message,
    ok_description="The password is set.",
    errors=("otp_invalid", "account_disabled"),
)
@inject
async def reset_password(
    request: web.Request,
    body: ResetPasswordBody,
    use_case: accounts.ResetPasswordWithCode = Provide[Container.reset_password],
) -> Message:
    command = accounts.ResetPassword(
        tenant=request_tenant(request),
        email=body.email,
        code=body.otp_code,
        new_password=body.new_password,
        client=client_info(request),
    )
    await use_case(command)
    return Message("Password reset. Every session has been ended.")


@endpoints.post(
    "/auth/login",
    operation_id="login",
    summary="Sign in with email and password",
    body=LoginBody,
    ok=SIGNED_IN,
    ok_description=SIGNED_IN_DESCRIPTION,
    errors=("invalid_credentials", "email_not_verified", "account_disabled"),
)
@inject
async def login(
    request: web.Request,
    body: LoginBody,
    use_case: accounts.LogInWithPassword = Provide[Container.log_in],
) -> TokenResponse | MfaRequiredView:
    command = accounts.LogIn(
        tenant=request_tenant(request),
        email=body.email,
        password=body.password,
        client=client_info(request),
    )
    return signed_in(await use_case(command))
