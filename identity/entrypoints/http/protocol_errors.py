"""Errors aiohttp answers before the application sees a request.

A header over the size limit, a malformed request line or an invalid method
is refused by aiohttp's HTTP parser, whose default answer is plain text that
echoes the raw request bytes and carries none of our headers. This handler
answers those with the same problem+json and security headers as the app.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus

from aiohttp import web_protocol, web_server
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from identity.entrypoints.http.middlewares import SECURITY_HEADERS
from identity.entrypoints.http.problems import Problem, problem_response

log = logging.getLogger("identity.errors")


class ProblemRequestHandler(web_protocol.RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        request_id = uuid.uuid4().hex
        if status >= 500:
            log.error(
                "error outside the application",
                exc_info=exc,
                extra={"request_id": request_id, "status": status},
            )
        else:
            # The parser's message may quote the raw request: never echo or log it.
            log.info(
                "malformed request refused",
                extra={"request_id": request_id, "status": status, "reason": type(exc).__name__},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        code = "internal_error" if status >= 500 else "bad_request"
        response = problem_response(Problem(status, code, phrase, f"{phrase}."))
        response.headers.update(SECURITY_HEADERS)
        response.headers["X-Request-ID"] = request_id
        response.headers["Server"] = "identity"
        response.force_close()
        return response


def install() -> None:
    """Make aiohttp's server build our handler (process-wide, idempotent).

    aiohttp offers no public hook for parser errors; its ``Server`` looks the
    handler class up in ``aiohttp.web_server`` when a connection arrives.
    """
    setattr(web_server, "RequestHandler", ProblemRequestHandler)  # noqa: B010
