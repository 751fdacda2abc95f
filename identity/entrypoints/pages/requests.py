"""What each page's form carries: request classes read by the API's declared parser.

The fields use the same rules (``d.EmailAddress``, ``d.Password``, ``d.Digits``,
...) as the JSON bodies, through ``declare.parse``, so a value is refused on a
page exactly as on the API (422, the field named).
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

import attrs

from identity.domain.otp import OtpPurpose
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.handlers.passkeys import Name as PasskeyName

Code = Annotated[str, d.Digits(length=6)]
FullName = Annotated[str, d.Text("the display name", max_length=200)]


@attrs.frozen
class PasswordSignIn:
    email: d.EmailAddress
    password: Annotated[str, d.Password()]


@attrs.frozen
class EmailOnly:
    email: d.EmailAddress


@attrs.frozen
class SignUp:
    email: d.EmailAddress
    password: Annotated[str, d.NewPassword()] | None = None
    full_name: FullName | None = None


@attrs.frozen
class CodeCheck:
    email: d.EmailAddress
    otp_code: Code
    purpose: Annotated[OtpPurpose, d.Choice(only=(OtpPurpose.VERIFICATION, OtpPurpose.LOGIN))] = (
        OtpPurpose.VERIFICATION
    )


@attrs.frozen
class NewCode:
    email: d.EmailAddress
    purpose: Annotated[OtpPurpose, d.Choice(only=(OtpPurpose.VERIFICATION, OtpPurpose.LOGIN))] = (
        OtpPurpose.VERIFICATION
    )


@attrs.frozen
class PasswordReset:
    email: d.EmailAddress
    otp_code: Code
    new_password: Annotated[str, d.NewPassword()]


@attrs.frozen
class SecondFactor:
    one_of: ClassVar[tuple[str, ...]] = ("code", "recovery_code")
    code: Code | None = None
    recovery_code: Annotated[str, d.Text("a recovery code", max_length=64)] | None = None


@attrs.frozen
class Profile:
    full_name: FullName


@attrs.frozen
class PasswordChange:
    current_password: Annotated[str, d.Password()]
    new_password: Annotated[str, d.NewPassword()]


@attrs.frozen
class SessionChoice:
    session_id: Annotated[UUID, d.Id("the session to end")]


@attrs.frozen
class ProviderChoice:
    provider: Annotated[str, d.Text("a provider's name", max_length=64)]


@attrs.frozen
class ApplicationChoice:
    client_id: Annotated[str, d.Text("a connected application's client_id", max_length=64)]


@attrs.frozen
class PasskeyNaming:
    """The name typed beside "Add a passkey" (blank: the default name)."""

    name: PasskeyName | None = None


@attrs.frozen
class TotpCode:
    code: Code


@attrs.frozen
class Deletion:
    password: Annotated[str, d.Password()] | None = None
    otp_code: Code | None = None


# --- the organizations section of the account page (section 19) -----------------------

OrgId = Annotated[UUID, d.Id("the organization's id")]
RoleName = Annotated[str, d.Text("a role of the tenant", max_length=63)]


@attrs.frozen
class OrgSwitch:
    organization_id: Annotated[str, d.Text("an organization's id, or none", max_length=64)]


@attrs.frozen
class OrgInvite:
    organization_id: OrgId
    email: d.EmailAddress
    role: RoleName


@attrs.frozen
class OrgInvitation:
    organization_id: OrgId
    invitation_id: Annotated[UUID, d.Id("the invitation's id")]


@attrs.frozen
class OrgMember:
    organization_id: OrgId
    user_id: Annotated[UUID, d.Id("the member's user id")]


@attrs.frozen
class OrgMemberRole:
    organization_id: OrgId
    user_id: Annotated[UUID, d.Id("the member's user id")]
    role: RoleName


@attrs.frozen
class InvitationCode:
    code: Annotated[str, d.Text("the invitation code", max_length=128)]
