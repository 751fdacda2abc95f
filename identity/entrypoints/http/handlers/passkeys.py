"""Handlers of passkeys (section 15): the two ceremonies as headless JSON, management,
and the admin routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, overload
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import passkeys
from identity.domain.api_keys import Scope
from identity.domain.emails import Email
from identity.domain.passkeys import NAME_MAX_LENGTH, InvalidPasskeyNameError, Passkey
from identity.domain.passkeys import passkey_name as check_name
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import FieldError, validation_problem
from identity.entrypoints.http.views import TokenResponse, client_info

endpoints = d.Endpoints(tag="passkeys")
admin_endpoints = d.Endpoints(tag="admin")

PASSKEY_ID = d.path_id("passkey_id", "the passkey's id (the service's, not the credential id)")
USER_ID = d.path_id("user_id", "the user's id")
FLOW_ID_MAX = 128


def _credential(value: Any) -> dict[str, Any]:
    # The response is judged by py_webauthn behind the use case: here only its shape
    # (an object) is checked; the body is bounded to 64 KiB by the app.
    if not isinstance(value, dict):
        raise d.Invalid("must be an object: the credential's toJSON()")
    return value


@attrs.frozen
class CredentialJson(d.Rule):
    """A ``PublicKeyCredential.toJSON()``, as the browser made it."""

    description: str | None = "`PublicKeyCredential.toJSON()` of the browser's answer"

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return _credential

    def schema(self, base: Any) -> dict[str, Any]:
        return {"type": "object", "description": self.description}


Credential = Annotated[dict[str, Any], CredentialJson()]
FlowId = Annotated[str, d.Text("the `flow_id` of the options answer", max_length=FLOW_ID_MAX)]
Name = Annotated[str, d.Text("1-64 characters (trimmed)", max_length=256)]


@overload
def checked_name(raw: str, field: str = "name") -> str: ...
@overload
def checked_name(raw: None, field: str = "name") -> None: ...
def checked_name(raw: str | None, field: str = "name") -> str | None:
    """The trimmed passkey name, or a 422 naming ``field`` (the API and the pages)."""
    if raw is None:
        return None
    try:
        return check_name(raw)
    except InvalidPasskeyNameError:
        raise validation_problem(
            [FieldError(field, f"must be 1-{NAME_MAX_LENGTH} characters after trimming")]
        ) from None


@attrs.frozen
class RegisterVerifyBody:
    flow_id: FlowId
    credential: Credential
    name: Name | None = None


@attrs.frozen
class LoginOptionsBody:
    email: (
        Annotated[
            Email,
            d.Address(
                "email-first sign-in: the account's passkeys (or decoys); absent: any passkey "
                "of this site (discoverable credentials)"
            ),
        ]
        | None
    ) = None


@attrs.frozen
class LoginVerifyBody:
    flow_id: FlowId
    credential: Credential


@attrs.frozen
class RenameBody:
    name: Name


@attrs.frozen
class FlowView:
    """A ceremony's options: pass `publicKey` to `parse*OptionsFromJSON`, then post the
    credential back with `flow_id`."""

    flow_id: str = d.out("send back with the credential; single use, 5 minutes")
    expires_in: int = d.out("seconds the flow lives (300)")
    publicKey: dict[str, Any] = d.out(
        "WebAuthn L3 `PublicKeyCredentialCreationOptionsJSON` or "
        "`PublicKeyCredentialRequestOptionsJSON` (binary members base64url)"
    )

    @classmethod
    def of(cls, flow: passkeys.FlowStarted) -> FlowView:
        return cls(flow.flow_id, flow.expires_in, dict(flow.public_key))


@attrs.frozen
class PasskeyView:
    """A passkey (never its public key, counter or attestation)."""

    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None = d.out("null until its first sign-in")
    transports: list[str] = d.out("as the authenticator reported, e.g. `internal`, `hybrid`")
    backed_up: bool = d.out("the BS flag of the latest ceremony: synced to a backup")

    @classmethod
    def of(cls, passkey: Passkey) -> PasskeyView:
        return cls(
            id=passkey.id,
            name=passkey.name,
            created_at=passkey.created_at,
            last_used_at=passkey.last_used_at,
            transports=list(passkey.transports),
            backed_up=passkey.backed_up,
        )


@attrs.frozen
class PasskeyList:
    """Passkeys, oldest first."""

    items: list[PasskeyView]


@endpoints.post(
    "/auth/passkeys/register/options",
    summary="Start adding a passkey: creation options",
    description="With MFA on, the session must be aal2 (`mfa_required`).",
    ok=FlowView,
    auth=d.BEARER,
    errors=("mfa_required",),
)
@inject
async def passkey_register_options(
    request: web.Request,
    use_case: passkeys.StartPasskeyRegistration = Provide[Container.start_passkey_registration],
) -> FlowView:
    return FlowView.of(await use_case(d.user(request)))


@endpoints.post(
    "/auth/passkeys/register/verify",
    summary="Finish adding a passkey",
    description="The flow is spent whatever the outcome. The owner gets a notice email.",
    body=RegisterVerifyBody,
    ok=PasskeyView,
    status=201,
    auth=d.BEARER,
    errors=("webauthn_invalid", "passkey_exists", "mfa_required"),
)
@inject
async def passkey_register_verify(
    request: web.Request,
    body: RegisterVerifyBody,
    use_case: passkeys.FinishPasskeyRegistration = Provide[Container.finish_passkey_registration],
) -> PasskeyView:
    command = passkeys.FinishRegistration(
        d.user(request),
        body.flow_id,
        body.credential,
        checked_name(body.name),
        client_info(request),
    )
    return PasskeyView.of(await use_case(command))


@endpoints.post(
    "/auth/passkeys/login/options",
    summary="Start a passkey sign-in: request options",
    description=(
        "Without `email`, `allowCredentials` is empty (discoverable credentials). With "
        "`email`, the account's passkeys, or decoys for an address without any: the answer "
        "never tells whether the account exists."
    ),
    body=LoginOptionsBody,
    ok=FlowView,
)
@inject
async def passkey_login_options(
    request: web.Request,
    body: LoginOptionsBody,
    use_case: passkeys.StartPasskeyLogin = Provide[Container.start_passkey_login],
) -> FlowView:
    return FlowView.of(await use_case(passkeys.StartLogin(request_tenant(request), body.email)))


@endpoints.post(
    "/auth/passkeys/login/verify",
    summary="Finish a passkey sign-in: aal2 tokens",
    description=(
        "A passkey sign-in is aal2 (`amr` `hwk` or `swk`, and `user`), also with MFA on. "
        "A credential the tenant does not hold is `passkey_not_found` (the page may call "
        "`PublicKeyCredential.signalUnknownCredential`)."
    ),
    body=LoginVerifyBody,
    ok=TokenResponse,
    errors=("webauthn_invalid", "passkey_not_found", "account_disabled", "email_not_verified"),
)
@inject
async def passkey_login_verify(
    request: web.Request,
    body: LoginVerifyBody,
    use_case: passkeys.FinishPasskeyLogin = Provide[Container.finish_passkey_login],
) -> TokenResponse:
    command = passkeys.FinishLogin(
        request_tenant(request), body.flow_id, body.credential, client_info(request)
    )
    return TokenResponse.of(await use_case(command))


@endpoints.get(
    "/auth/passkeys",
    summary="The caller's passkeys",
    ok=PasskeyList,
    auth=d.BEARER,
)
@inject
async def list_passkeys(
    request: web.Request,
    use_case: passkeys.ListPasskeys = Provide[Container.list_passkeys],
) -> PasskeyList:
    return PasskeyList([PasskeyView.of(passkey) for passkey in await use_case(d.user(request))])


@endpoints.patch(
    "/auth/passkeys/{passkey_id}",
    summary="Rename one of the caller's passkeys",
    path_params=(PASSKEY_ID,),
    body=RenameBody,
    ok=PasskeyView,
    auth=d.BEARER,
    errors=("not_found",),
)
@inject
async def rename_passkey(
    request: web.Request,
    passkey_id: UUID,
    body: RenameBody,
    use_case: passkeys.RenamePasskey = Provide[Container.rename_passkey],
) -> PasskeyView:
    name = checked_name(body.name)
    assert name is not None
    return PasskeyView.of(await use_case(d.user(request), passkey_id, name))


@endpoints.delete(
    "/auth/passkeys/{passkey_id}",
    summary="Remove one of the caller's passkeys",
    description=(
        "Not the last way to sign in (`last_sign_in_method`); with MFA on, the session must "
        "be aal2. The sessions it started stay (`logout-all` ends them)."
    ),
    path_params=(PASSKEY_ID,),
    auth=d.BEARER,
    errors=("not_found", "last_sign_in_method", "mfa_required"),
)
@inject
async def delete_passkey(
    request: web.Request,
    passkey_id: UUID,
    use_case: passkeys.DeletePasskey = Provide[Container.delete_passkey],
) -> None:
    await use_case(d.user(request), passkey_id, client_info(request))


@admin_endpoints.get(
    "/admin/users/{user_id}/passkeys",
    summary="A user's passkeys",
    path_params=(USER_ID,),
    ok=PasskeyList,
    auth=d.api_key(Scope.USERS_READ),
    errors=("not_found",),
)
@inject
async def admin_list_passkeys(
    request: web.Request,
    user_id: UUID,
    use_case: passkeys.AdminListPasskeys = Provide[Container.admin_list_passkeys],
) -> PasskeyList:
    found = await use_case(request_tenant(request), user_id)
    return PasskeyList([PasskeyView.of(passkey) for passkey in found])


@admin_endpoints.delete(
    "/admin/users/{user_id}/passkeys/{passkey_id}",
    summary="Remove a user's passkey",
    description="No last-method rule here: the emailed code still signs the user in.",
    path_params=(USER_ID, PASSKEY_ID),
    auth=d.api_key(Scope.USERS_WRITE),
    errors=("not_found",),
)
@inject
async def admin_delete_passkey(
    request: web.Request,
    user_id: UUID,
    passkey_id: UUID,
    use_case: passkeys.AdminDeletePasskey = Provide[Container.admin_delete_passkey],
) -> None:
    await use_case(request_tenant(request), user_id, passkey_id, client_info(request))
