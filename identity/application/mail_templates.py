"""The emails the service sends, as plain text and HTML.

Stdlib only: ``string.Template`` for both parts and ``html.escape`` on every
value interpolated into the HTML part, so an address or a product name can
never inject markup.
"""

from __future__ import annotations

from html import escape
from string import Template

from identity.domain.mail import EmailMessage

_CODE_TEXT = Template(
    """Hello,

$intro

    $code

The code expires in $expires. If you did not ask for it, you can ignore this
email: nothing changes without the code.

-- $product
"""
)

_CODE_HTML = Template(
    """<!doctype html>
<html><body style="font-family:sans-serif">
<p>Hello,</p>
<p>$intro</p>
<p style="font-size:24px;font-family:monospace;letter-spacing:4px"><strong>$code</strong></p>
<p>The code expires in $expires. If you did not ask for it, you can ignore this
email: nothing changes without the code.</p>
<p>&mdash; $product</p>
</body></html>
"""
)

_NOTICE_TEXT = Template(
    """Hello,

$body

-- $product
"""
)

_NOTICE_HTML = Template(
    """<!doctype html>
<html><body style="font-family:sans-serif">
<p>Hello,</p>
<p>$body</p>
<p>&mdash; $product</p>
</body></html>
"""
)


_CODE_TEXT_DE = Template(
    """Hallo,

$intro

    $code

Der Code läuft in $expires ab. Wenn Sie ihn nicht angefordert haben, können Sie
diese E-Mail ignorieren: Ohne den Code ändert sich nichts.

-- $product
"""
)

_CODE_HTML_DE = Template(
    """<!doctype html>
<html lang="de"><body style="font-family:sans-serif">
<p>Hallo,</p>
<p>$intro</p>
<p style="font-size:24px;font-family:monospace;letter-spacing:4px"><strong>$code</strong></p>
<p>Der Code läuft in $expires ab. Wenn Sie ihn nicht angefordert haben, können Sie
diese E-Mail ignorieren: Ohne den Code ändert sich nichts.</p>
<p>&mdash; $product</p>
</body></html>
"""
)

_NOTICE_TEXT_DE = Template(
    """Hallo,

$body

-- $product
"""
)

_NOTICE_HTML_DE = Template(
    """<!doctype html>
<html lang="de"><body style="font-family:sans-serif">
<p>Hallo,</p>
<p>$body</p>
<p>&mdash; $product</p>
</body></html>
"""
)

# The wording of each mail in the languages besides English (the account's locale,
# section 16): subject and intro (codes) or body (notices); {product} and {to} filled in.
_GERMAN = {
    "verification": (
        "Bestätigen Sie Ihre E-Mail-Adresse für {product}",
        "Mit diesem Code bestätigen Sie Ihre E-Mail-Adresse bei {product}:",
    ),
    "login": ("Ihr Anmeldecode für {product}", "Mit diesem Code melden Sie sich bei {product} an:"),
    "password_reset": (
        "Ihr Passwort für {product} zurücksetzen",
        "Mit diesem Code legen Sie ein neues Passwort für {product} fest:",
    ),
    "account_deletion": (
        "Bestätigen Sie die Löschung Ihres Kontos bei {product}",
        "Mit diesem Code löschen Sie Ihr Konto bei {product} endgültig. Wenn Sie das nicht "
        "angefordert haben, ignorieren Sie diese E-Mail und geben Sie den Code nicht weiter:",
    ),
    "already_registered": (
        "Jemand wollte sich mit Ihrer E-Mail-Adresse bei {product} registrieren",
        "Jemand, vielleicht Sie, wollte bei {product} ein Konto mit {to} anlegen, für das "
        "es bereits eines gibt. Es wurde kein neues Konto angelegt. Melden Sie sich an oder "
        "setzen Sie Ihr Passwort zurück. Wenn Sie es nicht waren, können Sie diese E-Mail "
        "ignorieren.",
    ),
    "password_changed": (
        "Ihr Passwort für {product} wurde geändert",
        "Das Passwort Ihres Kontos {to} bei {product} wurde soeben geändert, und andere "
        "Sitzungen wurden abgemeldet. Wenn Sie das nicht waren, setzen Sie Ihr Passwort "
        "sofort zurück und wenden Sie sich an den Support.",
    ),
}


_INVITATION_TEXT = Template(
    """Hello,

You are invited to join $organization on $product. Sign in with this address,
then open this link:

    $link

or enter this invitation code on the account page:

    $code

The invitation expires in 7 days. If you did not expect it, you can ignore
this email.

-- $product
"""
)

_INVITATION_HTML = Template(
    """<!doctype html>
<html><body style="font-family:sans-serif">
<p>Hello,</p>
<p>You are invited to join <strong>$organization</strong> on $product. Sign in with
this address, then <a href="$link">accept the invitation</a>, or enter this
invitation code on the account page:</p>
<p style="font-family:monospace"><strong>$code</strong></p>
<p>The invitation expires in 7 days. If you did not expect it, you can ignore this email.</p>
<p>&mdash; $product</p>
</body></html>
"""
)


def _minutes(count: int, locale: str | None = None) -> str:
    if locale == "de":
        return f"{count} Minute" if count == 1 else f"{count} Minuten"
    return f"{count} minute" if count == 1 else f"{count} minutes"


def _reject_newlines(name: str, value: str) -> None:
    # These values reach mail headers; a line break there is header injection.
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} must not contain line breaks")


class MailTemplates:
    """Builds every ``EmailMessage`` the use cases put in the outbox.

    The code is never in the subject: subjects show up in notification
    previews and in mail-server logs, the body does not.
    """

    def __init__(self, sender: str, product_name: str = "identity") -> None:
        _reject_newlines("sender", sender)
        _reject_newlines("product_name", product_name)
        self._sender = sender
        self._product = product_name

    def verification_code(
        self,
        to: str,
        code: str,
        expires_in_minutes: int,
        *,
        sender: str | None = None,
        locale: str | None = None,
    ) -> EmailMessage:
        if locale == "de":
            return self._german_code_mail("verification", to, code, expires_in_minutes, sender)
        return self._code_mail(
            to,
            code,
            expires_in_minutes,
            subject=f"Verify your email for {self._product}",
            intro=f"Use this code to verify your email address on {self._product}:",
            sender=sender,
        )

    def login_code(
        self,
        to: str,
        code: str,
        expires_in_minutes: int,
        *,
        sender: str | None = None,
        locale: str | None = None,
    ) -> EmailMessage:
        if locale == "de":
            return self._german_code_mail("login", to, code, expires_in_minutes, sender)
        return self._code_mail(
            to,
            code,
            expires_in_minutes,
            subject=f"Your sign-in code for {self._product}",
            intro=f"Use this code to sign in to {self._product}:",
            sender=sender,
        )

    def password_reset_code(
        self,
        to: str,
        code: str,
        expires_in_minutes: int,
        *,
        sender: str | None = None,
        locale: str | None = None,
    ) -> EmailMessage:
        if locale == "de":
            return self._german_code_mail("password_reset", to, code, expires_in_minutes, sender)
        return self._code_mail(
            to,
            code,
            expires_in_minutes,
            subject=f"Reset your {self._product} password",
            intro=f"Use this code to choose a new password for {self._product}:",
            sender=sender,
        )

    def account_deletion_code(
        self,
        to: str,
        code: str,
        expires_in_minutes: int,
        *,
        sender: str | None = None,
        locale: str | None = None,
    ) -> EmailMessage:
        if locale == "de":
            return self._german_code_mail("account_deletion", to, code, expires_in_minutes, sender)
        return self._code_mail(
            to,
            code,
            expires_in_minutes,
            subject=f"Confirm the deletion of your {self._product} account",
            intro=(
                f"Use this code to delete your account on {self._product} for good. "
                "If you did not ask for it, ignore this email and keep the code to yourself:"
            ),
            sender=sender,
        )

    def already_registered_notice(
        self, to: str, *, sender: str | None = None, locale: str | None = None
    ) -> EmailMessage:
        """Sent instead of a code when a verified address registers again (no enumeration)."""
        if locale == "de":
            return self._german_notice("already_registered", to, sender)
        return self._notice_mail(
            to,
            subject=f"Someone tried to register with your email on {self._product}",
            body=(
                f"Someone, maybe you, tried to create an account on {self._product} with "
                f"{to}, which already has one. No new account was created. To get in, "
                "sign in or reset your password. If it was not you, you can ignore this email."
            ),
            sender=sender,
        )

    def password_changed_notice(
        self, to: str, *, sender: str | None = None, locale: str | None = None
    ) -> EmailMessage:
        if locale == "de":
            return self._german_notice("password_changed", to, sender)
        return self._notice_mail(
            to,
            subject=f"Your {self._product} password was changed",
            body=(
                f"The password of your account {to} on {self._product} was just changed and "
                "other sessions were signed out. If it was not you, reset your password "
                "now and contact support."
            ),
            sender=sender,
        )

    def passkey_added_notice(
        self, to: str, *, name: str, added_at: str, sender: str | None = None
    ) -> EmailMessage:
        """Sent when a passkey is added: its name and when, no link and no code."""
        return self._notice_mail(
            to,
            subject=f"A passkey was added to your {self._product} account",
            body=(
                f'A passkey named "{name}" was added to your account {to} on '
                f"{self._product} at {added_at}. It can now sign in to your account. If it "
                "was not you, remove it from your account page and contact support."
            ),
            sender=sender,
        )

    def organization_invitation(
        self, to: str, code: str, organization: str, link: str, *, sender: str | None = None
    ) -> EmailMessage:
        """An invitation to an organization: the code, and a link that carries it."""
        return self._message(
            to,
            f"You are invited to join an organization on {self._product}",
            _INVITATION_TEXT,
            _INVITATION_HTML,
            {"organization": organization, "code": code, "link": link},
            sender,
        )

    def _code_mail(
        self,
        to: str,
        code: str,
        expires_in_minutes: int,
        *,
        subject: str,
        intro: str,
        sender: str | None,
    ) -> EmailMessage:
        values = {"intro": intro, "code": code, "expires": _minutes(expires_in_minutes)}
        return self._message(to, subject, _CODE_TEXT, _CODE_HTML, values, sender)

    def _german_code_mail(
        self, kind: str, to: str, code: str, minutes: int, sender: str | None
    ) -> EmailMessage:
        subject, intro = (part.format(product=self._product) for part in _GERMAN[kind])
        values = {"intro": intro, "code": code, "expires": _minutes(minutes, "de")}
        return self._message(to, subject, _CODE_TEXT_DE, _CODE_HTML_DE, values, sender)

    def _german_notice(self, kind: str, to: str, sender: str | None) -> EmailMessage:
        subject, body = (part.format(product=self._product, to=to) for part in _GERMAN[kind])
        return self._message(to, subject, _NOTICE_TEXT_DE, _NOTICE_HTML_DE, {"body": body}, sender)

    def _notice_mail(self, to: str, *, subject: str, body: str, sender: str | None) -> EmailMessage:
        return self._message(to, subject, _NOTICE_TEXT, _NOTICE_HTML, {"body": body}, sender)

    def _message(
        self,
        to: str,
        subject: str,
        text: Template,
        html: Template,
        values: dict[str, str],
        sender: str | None,
    ) -> EmailMessage:
        chosen_sender = self._sender if sender is None else sender
        _reject_newlines("sender", chosen_sender)
        _reject_newlines("to", to)
        values = {**values, "product": self._product}
        escaped = {key: escape(value) for key, value in values.items()}
        return EmailMessage(
            to=to,
            subject=subject,
            text=text.substitute(values),
            html=html.substitute(escaped),
            sender=chosen_sender,
        )
