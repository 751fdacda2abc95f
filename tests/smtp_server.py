"""A real SMTP server for tests: aiosmtpd served on the test's own event loop.

    async with SmtpTestServer() as smtp:
        ...send to 127.0.0.1:smtp.port...
        [message] = await smtp.wait_for_messages(1)

``stop()`` then ``start()`` simulates an outage: the server comes back on the
same port. ``tls="starttls"`` or ``"tls"`` needs a ``SelfSignedCertificate``;
give its ``client_context()`` to the client. ``credentials`` turns on AUTH
(PLAIN and LOGIN). ``rcpt_replies`` maps a recipient address to the reply its
RCPT gets, e.g. ``"550 5.1.1 No such user"`` or ``"451 4.3.0 Try later"``.

The server runs on the loop that calls ``start()``, so use it from one test
(function-scoped loop); no threads, so waiting is event based.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
import warnings
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import attrs
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@attrs.frozen
class SelfSignedCertificate:
    """A key and a self-signed certificate for ``localhost`` and ``127.0.0.1``."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def generate(cls) -> SelfSignedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain only reads files.
        with tempfile.TemporaryDirectory() as directory:
            cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
            cert_file.write_bytes(self.cert_pem)
            key_file.write_bytes(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())


@attrs.frozen
class ReceivedEnvelope:
    mail_from: str
    rcpt_tos: list[str]


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self._server = server

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._server.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content.encode() if isinstance(content, str) else content or b""
        parsed = BytesParser(policy=default_policy).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        await self._server._received(
            parsed, ReceivedEnvelope(str(envelope.mail_from), list(envelope.rcpt_tos))
        )
        return "250 Message accepted for delivery"


class SmtpTestServer:
    """An aiosmtpd server on 127.0.0.1 that keeps what it receives."""

    def __init__(
        self,
        *,
        port: int = 0,
        tls: Literal["none", "starttls", "tls"] = "none",
        certificate: SelfSignedCertificate | None = None,
        credentials: tuple[str, str] | None = None,
        rcpt_replies: dict[str, str] | None = None,
    ) -> None:
        if tls != "none" and certificate is None:
            raise ValueError("TLS needs a certificate")
        self.host = "127.0.0.1"
        self.port = port
        self.tls = tls
        self.credentials = credentials
        self.rcpt_replies: dict[str, str] = dict(rcpt_replies or {})
        self.messages: list[EmailMessage] = []
        self.envelopes: list[ReceivedEnvelope] = []
        self.authenticated: list[str] = []
        self._ssl_context = certificate.server_context() if certificate else None
        self._handler = _Handler(self)
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._connections: set[SMTP] = set()

    async def start(self) -> None:
        """Listen; on the port of the previous start when there was one."""
        if self._server is not None:
            raise RuntimeError("already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            self.host,
            self.port,
            ssl=self._ssl_context if self.tls == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections, as a crashed server would."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        self._connections.clear()
        await server.wait_closed()

    # A timeout argument rather than asyncio.timeout() around the call: the
    # default keeps a test from hanging when the message never comes.
    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived; return all of them."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
            return list(self.messages)

    async def __aenter__(self) -> SmtpTestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _received(self, message: EmailMessage, envelope: ReceivedEnvelope) -> None:
        async with self._arrived:
            self.messages.append(message)
            self.envelopes.append(envelope)
            self._arrived.notify_all()

    def _new_connection(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without TLS; the test asked for it.
            warnings.simplefilter("ignore")
            connection = SMTP(
                self._handler,
                hostname="localhost",  # skips aiosmtpd's FQDN lookup
                tls_context=self._ssl_context if self.tls == "starttls" else None,
                require_starttls=self.tls == "starttls",
                auth_required=self.credentials is not None,
                # aiosmtpd only sees STARTTLS as TLS, not an implicitly TLS socket.
                auth_require_tls=self.tls == "starttls",
                authenticator=self._authenticate,
                loop=asyncio.get_running_loop(),
            )
        # Forget finished connections so a long test does not pile them up.
        self._connections = {c for c in self._connections if c.transport is not None}
        self._connections.add(connection)
        return connection

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = self.credentials
        success = auth_data.login.decode() == login and auth_data.password.decode() == password
        if success:
            self.authenticated.append(login)
        return AuthResult(success=success, handled=False)
