"""Errors on the pages are pages: a 404, a 403, a 429 that says when to try again."""

from __future__ import annotations

import logging

from aiohttp import web

from identity.domain.errors import DomainError, StorageUnavailableError
from identity.entrypoints.http.middlewares import Guard, Handler
from identity.entrypoints.http.problems import Problem, problem_for, unavailable_problem
from identity.entrypoints.pages import messages
from identity.entrypoints.pages.page import PAGE, bare_page

log = logging.getLogger("identity.pages")


def _problem(error: Exception) -> Problem | None:
    if isinstance(error, Problem):
        return error
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            return None
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return Problem(error.status, code.get(error.status, "bad_request"), error.reason)
    if isinstance(error, StorageUnavailableError):
        return unavailable_problem()
    if isinstance(error, DomainError):
        return problem_for(error)
    return None


def page_errors(guard: Guard) -> Guard:
    """Wraps the edge's guard: under ``/ui/`` a problem (a refused CSRF token, a 429
    of the limits, a domain error) becomes an error page in the page's language."""

    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/ui/"):
            return await guard(request, handler)
        try:
            return await guard(request, handler)
        except (Problem, web.HTTPException, DomainError) as error:
            problem = _problem(error)
            if problem is None:
                raise
            return render_error(request, problem)

    return guarded


def render_error(request: web.Request, problem: Problem) -> web.Response:
    page = request.get(PAGE) or bare_page(request, None)
    retry_after = problem.headers.get("Retry-After")
    response = page.render(
        "error.html",
        status=problem.status,
        message=messages.ERRORS.get(problem.code, messages.FALLBACK_ERROR),
        retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
    )
    for name, value in problem.headers.items():
        response.headers.setdefault(name, value)
    return response
