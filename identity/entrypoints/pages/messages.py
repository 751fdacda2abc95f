"""The pages' wording of the API's errors and notices (msgids of the catalogues).

A page shows an error of the use cases next to its field, in the page's
language: the error code chooses the message here, and the field errors of a
form keep the API's field names.
"""

from __future__ import annotations

from identity.entrypoints.http.problems import FieldError, Problem


def N_(message: str) -> str:
    """Marks a message for the catalogues; translated when rendered."""
    return message


ERRORS = {
    "invalid_credentials": N_("The email address or the password is not right."),
    "email_not_verified": N_(
        "This email address is not confirmed yet. Sign in with an emailed code to confirm it."
    ),
    "account_disabled": N_("This account is disabled."),
    "otp_invalid": N_("That code is wrong, used or expired. Ask for a new one."),
    "mfa_invalid": N_("That code is not right. Try again."),
    "mfa_required": N_("Confirm it is you with your second factor first."),
    "mfa_already_enabled": N_("Two-step sign-in is already on."),
    "mfa_not_enabled": N_("Two-step sign-in is off."),
    "invalid_token": N_("This step has expired. Please start again."),
    "validation_error": N_("Please correct the fields marked below."),
    "rate_limited": N_("Too many attempts."),
    "csrf_failed": N_("This form has expired or came from another site. Reload the page."),
    "not_found": N_("There is no such page."),
    "tenant_not_found": N_("There is no such page."),
    "last_sign_in_method": N_("You cannot remove your only way to sign in."),
    "identity_in_use": N_("That account is already linked to another user."),
    "provider_not_configured": N_("This sign-in provider is not set up."),
    "provider_unavailable": N_("The sign-in provider cannot be reached. Try again later."),
    "oauth_failed": N_("Signing in with the provider failed. Try again."),
    "service_unavailable": N_("The service is unavailable for a moment. Try again shortly."),
    "payload_too_large": N_("The form is too large."),
    "unsupported_media_type": N_("The form could not be read."),
    "malformed_form": N_("The form could not be read."),
    "method_not_allowed": N_("There is no such page."),
    "webauthn_invalid": N_("The passkey could not be used. Please try again."),
    "passkey_not_found": N_("This passkey is not registered here. Choose another way to sign in."),
    "passkey_exists": N_("This passkey is already added."),
    "insufficient_permission": N_("Your roles in this organization do not allow this."),
    "last_owner": N_("An organization always keeps an owner: make someone else owner first."),
    "already_member": N_("That person is already a member."),
    "invitation_invalid": N_("This invitation is wrong, used, revoked or expired."),
    "invitation_email_mismatch": N_(
        "This invitation is for another email address. Sign in with that address."
    ),
}
FALLBACK_ERROR = N_("Something went wrong. Please try again.")

# The API's field messages (bodies.py, passwords.py) in the pages' languages.
FIELD_MESSAGES = {
    "field required": N_("This field is required."),
    "must not be empty": N_("This field is required."),
    "not a valid email address": N_("Enter a valid email address."),
    "must be 6 digits": N_("Enter the 6 digits of the code."),
}
FALLBACK_FIELD = N_("This value is not valid.")
PASSWORD_FIELD = N_("Choose a longer password that is not common (at least 8 characters).")

NOTICES = {
    "signed_out": N_("You are signed out."),
    "password_reset": N_("Your password is changed. Sign in with the new one."),
    "expired": N_("That step took too long. Please sign in again."),
    "code_sent": N_("If the address can receive it, a code is on its way."),
    "deleted": N_("Your account is deleted."),
    "profile_saved": N_("Your name is saved."),
    "password_changed": N_("Your password is changed. Your other sessions have ended."),
    "session_ended": N_("That session has ended."),
    "sessions_ended": N_("Every other session has ended."),
    "unlinked": N_("The sign-in is removed."),
    "linked": N_("The sign-in is linked."),
    "mfa_disabled": N_("Two-step sign-in is off."),
    "passkey_added": N_("Your passkey is added."),
    "passkey_renamed": N_("The passkey is renamed."),
    "passkey_removed": N_("The passkey is removed."),
    "organization_switched": N_("This browser now acts in the chosen organization."),
    "invitation_sent": N_("The invitation is on its way."),
    "invitation_revoked": N_("The invitation is revoked."),
    "invitation_accepted": N_("You joined the organization."),
    "member_changed": N_("The member's role is changed."),
    "member_removed": N_("The member is removed."),
    "application_revoked": N_("The application is disconnected."),
}


def field_errors(problem: Problem) -> dict[str, str]:
    """The problem's field errors by field (the first per field), as msgids."""
    found: dict[str, str] = {}
    for error in problem.errors or []:
        found.setdefault(error.field, field_message(error))
    return found


def field_message(error: FieldError) -> str:
    if error.message in FIELD_MESSAGES:
        return FIELD_MESSAGES[error.message]
    if "password" in error.field:
        return PASSWORD_FIELD
    return FALLBACK_FIELD
