"""MailTemplates: every mail has both parts, codes where expected, HTML escaped."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from identity.application.mail_templates import MailTemplates
from identity.domain.mail import EmailMessage

SIX_DIGITS = re.compile(r"(?<!\d)\d{6}(?!\d)")
TEMPLATES = MailTemplates(sender="Acme <no-reply@acme.test>", product_name="Acme")

CodeMail = Callable[..., EmailMessage]
CODE_MAILS: dict[str, CodeMail] = {
    "verification": TEMPLATES.verification_code,
    "login": TEMPLATES.login_code,
    "password_reset": TEMPLATES.password_reset_code,
    "account_deletion": TEMPLATES.account_deletion_code,
}
NOTICES: dict[str, Callable[..., EmailMessage]] = {
    "already_registered": TEMPLATES.already_registered_notice,
    "password_changed": TEMPLATES.password_changed_notice,
}


@pytest.mark.parametrize("purpose", CODE_MAILS)
def test_code_mail_carries_the_code_in_both_parts_but_not_the_subject(purpose: str) -> None:
    mail = CODE_MAILS[purpose]("bob@example.test", "731904", 10)

    assert mail.to == "bob@example.test"
    assert mail.sender == "Acme <no-reply@acme.test>"
    assert "731904" in mail.text
    assert "731904" in mail.html
    assert "731904" not in mail.subject
    assert "10 minutes" in mail.text
    assert "10 minutes" in mail.html
    assert "Acme" in mail.subject


def test_each_code_mail_has_its_own_subject() -> None:
    subjects = {make("bob@example.test", "731904", 10).subject for make in CODE_MAILS.values()}
    assert len(subjects) == len(CODE_MAILS)


def test_one_minute_is_singular() -> None:
    mail = TEMPLATES.login_code("bob@example.test", "731904", 1)
    assert "1 minute." in mail.text
    assert "1 minutes" not in mail.text


@pytest.mark.parametrize("notice", NOTICES)
def test_notices_contain_no_code(notice: str) -> None:
    mail = NOTICES[notice]("bob@example.test")

    assert mail.text.strip() and mail.html.strip()
    for part in (mail.subject, mail.text, mail.html):
        assert SIX_DIGITS.search(part) is None, part


def test_six_digit_check_would_see_a_code() -> None:
    # Guards the regex used above: it must match a code as the templates render it.
    mail = TEMPLATES.verification_code("bob@example.test", "000123", 10)
    assert SIX_DIGITS.search(mail.text) is not None
    assert SIX_DIGITS.search(mail.html) is not None


def test_already_registered_notice_names_the_address() -> None:
    mail = TEMPLATES.already_registered_notice("bob@example.test")
    assert "bob@example.test" in mail.text
    assert "bob@example.test" in mail.html


def test_html_part_escapes_product_name_and_address() -> None:
    evil_product = '<script>alert("x")</script>'
    evil_to = '"<img src=x onerror=alert(1)>"@example.test'
    templates = MailTemplates(sender="no-reply@acme.test", product_name=evil_product)

    for mail in (
        templates.verification_code(evil_to, "731904", 10),
        templates.already_registered_notice(evil_to),
        templates.password_changed_notice(evil_to),
    ):
        assert "<script>" not in mail.html
        assert "<img" not in mail.html
        assert "&lt;script&gt;" in mail.html
        # The plain-text part shows the values as they are.
        assert evil_product in mail.text


def test_code_is_escaped_in_html() -> None:
    mail = TEMPLATES.login_code("bob@example.test", "<b>1</b>", 10)
    assert "<b>1</b>" not in mail.html
    assert "&lt;b&gt;1&lt;/b&gt;" in mail.html


def test_sender_can_be_overridden_per_call() -> None:
    mail = TEMPLATES.login_code("bob@example.test", "731904", 10, sender="Beta <hi@beta.test>")
    notice = TEMPLATES.password_changed_notice("bob@example.test", sender="Beta <hi@beta.test>")
    assert mail.sender == "Beta <hi@beta.test>"
    assert notice.sender == "Beta <hi@beta.test>"


@pytest.mark.parametrize(
    ("sender", "product"),
    [("a@b.test\r\nBcc: x@evil.test", "Acme"), ("a@b.test", "Acme\nBcc: x@evil.test")],
)
def test_line_breaks_in_header_values_are_refused(sender: str, product: str) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        MailTemplates(sender=sender, product_name=product)


def test_line_break_in_sender_override_is_refused() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        TEMPLATES.login_code("bob@example.test", "731904", 10, sender="a@b.test\nBcc: x@e.test")
