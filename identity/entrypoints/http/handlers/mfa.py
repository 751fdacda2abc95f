"""Handlers of multi-factor authentication: TOTP enrolment, the second step of a sign-in,
step-up, recovery codes, removal by the user and by an administrator."""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import mfa
from identity.application.recovery_codes import normalise_recovery_code
from identity.domain.api_keys import Scope
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import FieldError, validation_problem
from identity.entrypoints.http.views import Message, TokenResponse, client_info

endpoints = d.Endpoints(tag="mfa")
admin_endpoints = d.Endpoints(tag="admin")

CODE_DESCRIPTION = "the 6-digit code the authenticator app shows now"
RECOVERY_DESCRIPTION = (
    "one of the recovery codes, like `abcd-efgh-jkmn` (case, spaces and hyphens ignored)"
)


Code = Annotated[str, d.Digits(CODE_DESCRIPTION, length=6)]
RecoveryCode = Annotated[str, d.Text(RECOVERY_DESCRIPTION, max_length=64)]


@attrs.frozen
class TotpCode:
    code: Code


def _proof(code: str | None, recovery_code: str | None) -> mfa.SecondFactorProof:
    """The proof, or a 422 that names the field (nothing is spent on a bad form).

    ``declare.parse`` made sure exactly one of the two is there (``one_of``).
    """
    if recovery_code is not None and normalise_recovery_code(recovery_code) is None:
        raise validation_problem(
            [FieldError("recovery_code", "must be a recovery code like abcd-efgh-jkmn")]
        )
    return mfa.SecondFactorProof(code=code, recovery_code=recovery_code)


@attrs.frozen
class SecondFactor:
    """Exactly one of ``code`` and ``recovery_code``."""

    one_of: ClassVar[tuple[str, ...]] = ("code", "recovery_code")
    code: Code | None = None
    recovery_code: RecoveryCode | None = None

    def proof(self) -> mfa.SecondFactorProof:
        return _proof(self.code, self.recovery_code)


@attrs.frozen
class VerifyBody:
    """The ``mfa_token`` and exactly one of ``code`` and ``recovery_code``."""

    one_of: ClassVar[tuple[str, ...]] = ("code", "recovery_code")
    mfa_token: Annotated[
        str, d.Text("the `mfa_token` of the `mfa_required` answer", max_length=128)
    ]
    code: Code | None = None
    recovery_code: RecoveryCode | None = None

    def proof(self) -> mfa.SecondFactorProof:
        return _proof(self.code, self.recovery_code)


@attrs.frozen
class TotpEnrollmentView:
    """A pending TOTP factor: show the URI as a QR code, then confirm with a code."""

    factor_id: UUID
    secret: str = d.out("the base32 shared secret, for typing into the app by hand")
    otpauth_uri: str = d.out("`otpauth://totp/...`, for a QR code")


@attrs.frozen
class RecoveryCodesView:
    """Ten single-use recovery codes, shown this once; any older set is dead."""

    recovery_codes: list[str] = d.out("ten codes like `abcd-efgh-jkmn`")


def _recovery_codes(result: mfa.RecoveryCodes) -> RecoveryCodesView:
    return RecoveryCodesView(list(result.codes))


@endpoints.post(
    "/auth/mfa/totp/enroll",
    summary="Start TOTP enrolment",
    description="Pending until confirmed; a new enrolment replaces a pending one.",
    ok=TotpEnrollmentView,
    auth=d.BEARER,
    errors=("mfa_already_enabled",),
)
@inject
async def enroll_totp(
    request: web.Request, use_case: mfa.EnrollTotp = Provide[Container.enroll_totp]
) -> TotpEnrollmentView:
    enrollment = await use_case(d.user(request))
    return TotpEnrollmentView(enrollment.factor_id, enrollment.secret, enrollment.otpauth_uri)


@endpoints.post(
    "/auth/mfa/totp/confirm",
    summary="Confirm TOTP enrolment: MFA is on",
    description=(
        "Answers ten recovery codes, shown once. The caller's session becomes aal2; the "
        "user's other sessions stay aal1 until they step up."
    ),
    body=TotpCode,
    ok=RecoveryCodesView,
    auth=d.BEARER,
    errors=("mfa_invalid", "mfa_already_enabled"),
)
@inject
async def confirm_totp(
    request: web.Request,
    body: TotpCode,
    use_case: mfa.ConfirmTotp = Provide[Container.confirm_totp],
) -> RecoveryCodesView:
    return _recovery_codes(await use_case(d.user(request), body.code, client_info(request)))


@endpoints.post(
    "/auth/mfa/verify",
    summary="Finish a sign-in with the second factor",
    description=(
        "The `mfa_token` of an `mfa_required` answer (single use, 5 minutes, the same "
        "client) and a TOTP or recovery code; answers aal2 tokens. Each wrong code is "
        "`mfa_invalid`; after five the token is dead (`invalid_token`)."
    ),
    body=VerifyBody,
    ok=TokenResponse,
    errors=("mfa_invalid", "invalid_token", "account_disabled"),
)
@inject
async def verify_mfa(
    request: web.Request,
    body: VerifyBody,
    use_case: mfa.VerifyMfa = Provide[Container.verify_mfa],
) -> TokenResponse:
    command = mfa.VerifySecondFactor(
        tenant=request_tenant(request),
        mfa_token=body.mfa_token,
        proof=body.proof(),
        client=client_info(request),
    )
    return TokenResponse.of(await use_case(command))


@endpoints.post(
    "/auth/mfa/step-up",
    summary="Raise the caller's session to aal2",
    description="Answers tokens for the same session (its refresh token unchanged).",
    body=SecondFactor,
    ok=TokenResponse,
    auth=d.BEARER,
    errors=("mfa_invalid", "mfa_not_enabled"),
)
@inject
async def step_up(
    request: web.Request,
    body: SecondFactor,
    use_case: mfa.StepUp = Provide[Container.step_up],
) -> TokenResponse:
    pair = await use_case(d.user(request), body.proof(), client_info(request))
    return TokenResponse.of(pair)


@endpoints.post(
    "/auth/mfa/recovery-codes",
    summary="Make a new set of recovery codes (aal2)",
    ok=RecoveryCodesView,
    auth=d.BEARER,
    errors=("mfa_required", "mfa_not_enabled"),
)
@inject
async def renew_recovery_codes(
    request: web.Request,
    use_case: mfa.RenewRecoveryCodes = Provide[Container.renew_recovery_codes],
) -> RecoveryCodesView:
    return _recovery_codes(await use_case(d.user(request)))


@endpoints.delete(
    "/auth/mfa/totp",
    summary="Turn MFA off (aal2 and a current code)",
    description="Every factor and recovery code is removed; every other session ends.",
    body=TotpCode,
    ok=Message,
    auth=d.BEARER,
    errors=("mfa_invalid", "mfa_required", "mfa_not_enabled"),
)
@inject
async def disable_totp(
    request: web.Request,
    body: TotpCode,
    use_case: mfa.DisableTotp = Provide[Container.disable_totp],
) -> Message:
    await use_case(d.user(request), body.code, client_info(request))
    return Message("MFA is off. Every other session has been ended.")


@admin_endpoints.delete(
    "/admin/users/{user_id}/mfa",
    summary="Remove every factor and recovery code of a user",
    description="The user's sessions end; the next sign-in needs the first factor only.",
    path_params=(d.path_id("user_id", "the user's id"),),
    ok=Message,
    auth=d.api_key(Scope.USERS_WRITE),
)
@inject
async def reset_mfa(
    request: web.Request,
    user_id: UUID,
    use_case: mfa.ResetMfa = Provide[Container.reset_mfa],
) -> Message:
    await use_case(request_tenant(request), user_id, client_info(request))
    return Message("Every factor and recovery code of the user has been removed.")
