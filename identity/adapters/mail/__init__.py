"""Mailer adapters: SMTP for real delivery, the log for development."""

from identity.adapters.mail.log import LogMailer
from identity.adapters.mail.smtp import SmtpMailer, build_mime_message

__all__ = ["LogMailer", "SmtpMailer", "build_mime_message"]
