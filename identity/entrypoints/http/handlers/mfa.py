"""Handlers of multi-factor authentication: TOTP enrolment, the second step, step-up,
recovery codes and removal."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import mfa, sessions
from identity.entrypoints.container import Container
from identity.entrypoints.http.bodies import Body, read_body
from identity.entrypoints.http.handlers.sessions import authenticated
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import FieldError, validation_problem
from identity.entrypoints.http.views import client_info, token_view

routes = web.RouteTableDef()

MAX_MFA_TOKEN_LENGTH = 128


def _proof(body: Body, data: dict[str, Any]) -> mfa.SecondFactorProof:
    """Exactly one of ``code`` (6 digits) and ``recovery_code``, well formed, or a 422."""
    has_code, has_recovery = data.get("code") is not None, data.get("recovery_code") is not None
    if has_code == has_recovery:
        body.check()
        raise validation_problem(
            [FieldError("code", "give either code or recovery_code (exactly one)")]
        )
    if has_code:
        return mfa.SecondFactorProof(code=body.code("code"))
    raw = body.text("recovery_code", max_length=64)
    if raw and mfa.normalise_recovery_code(raw) is None:
        body.fail("recovery_code", "must be a recovery code like abcd-efgh-jkmn")
    return mfa.SecondFactorProof(recovery_code=raw)


def _recovery_codes(result: mfa.RecoveryCodes) -> dict[str, Any]:
    return {"recovery_codes": list(result.codes)}


@routes.post("/auth/mfa/totp/enroll")
@inject
async def enroll_totp(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: mfa.EnrollTotp = Provide[Container.enroll_totp],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    enrollment = await use_case(principal)
    return web.json_response(
        {
            "factor_id": str(enrollment.factor_id),
            "secret": enrollment.secret,
            "otpauth_uri": enrollment.otpauth_uri,
        }
    )


@routes.post("/auth/mfa/totp/confirm")
@inject
async def confirm_totp(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: mfa.ConfirmTotp = Provide[Container.confirm_totp],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    body = await read_body(request)
    code = body.code("code")
    body.check()
    return web.json_response(_recovery_codes(await use_case(principal, code)))


@routes.post("/auth/mfa/verify")
@inject
async def verify_mfa(
    request: web.Request,
    use_case: mfa.VerifyMfa = Provide[Container.verify_mfa],
) -> web.Response:
    body = await read_body(request)
    token = body.text("mfa_token", max_length=MAX_MFA_TOKEN_LENGTH)
    proof = _proof(body, body.data)
    body.check()
    command = mfa.VerifySecondFactor(
        tenant=request_tenant(request), mfa_token=token, proof=proof, client=client_info(request)
    )
    return web.json_response(token_view(await use_case(command)))


@routes.post("/auth/mfa/step-up")
@inject
async def step_up(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: mfa.StepUp = Provide[Container.step_up],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    body = await read_body(request)
    proof = _proof(body, body.data)
    body.check()
    return web.json_response(token_view(await use_case(principal, proof)))


@routes.post("/auth/mfa/recovery-codes")
@inject
async def renew_recovery_codes(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: mfa.RenewRecoveryCodes = Provide[Container.renew_recovery_codes],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    return web.json_response(_recovery_codes(await use_case(principal)))


@routes.delete("/auth/mfa/totp")
@inject
async def disable_totp(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: mfa.DisableTotp = Provide[Container.disable_totp],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    body = await read_body(request)
    code = body.code("code")
    body.check()
    await use_case(principal, code)
    return web.json_response({"message": "MFA is off. Every other session has been ended."})
