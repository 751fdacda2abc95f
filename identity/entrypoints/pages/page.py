"""One page request: its tenant, language, browser session, CSRF token, and rendering.

A handler loads the ``Page`` (``await load_page(request)``), reads
``page.principal`` (the signed-in account, or None), and answers with
``page.render("template.html", ...)`` or ``page.redirect(url)``. Every
answer carries the pages' headers and, when new, the browser's CSRF cookie.
"""

from __future__ import annotations

import gettext
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import attrs
from aiohttp import web

from identity.application.sessions import Principal
from identity.domain.branding import Branding
from identity.domain.tenants import DEFAULT_TENANT_SLUG, Tenant
from identity.entrypoints.http.keys import CONTAINER, SETTINGS
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.pages import i18n
from identity.entrypoints.pages.forms import Form, read_form
from identity.entrypoints.pages.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    DEFAULT_RETURN_TO,
    CsrfTokens,
    add_page_headers,
    browser_cookie_name,
    clear_cookie,
    is_cross_site,
    new_csrf_seed,
    safe_return_to,
    set_cookie,
)

PAGE: web.RequestKey[Page] = web.RequestKey("page")
CSRF: web.AppKey[CsrfTokens] = web.AppKey("pages.csrf")
CSRF_MAX_AGE = 86400 * 30


@attrs.define
class Page:
    request: web.Request
    tenant: Tenant | None
    branding: Branding
    locale: str
    translations: gettext.NullTranslations
    csrf_seed: str
    csrf_is_new: bool
    browser_value: str | None = None
    principal: Principal | None = None
    return_to: str = DEFAULT_RETURN_TO
    has_return_to: bool = False
    explicit_lang: str | None = None
    # 303 after a form post; a provider's callback (a GET the API declares) answers 302.
    redirect_status: int = 303
    cookies_to_set: list[tuple[str, str, int | None, str]] = attrs.field(factory=list)
    cookies_to_clear: list[tuple[str, str]] = attrs.field(factory=list)

    # --- reading ---------------------------------------------------------------------
    @property
    def known_tenant(self) -> Tenant:
        """The tenant of a loaded page (only error pages may have none)."""
        assert self.tenant is not None, "a page loaded by load_page has a tenant"
        return self.tenant

    @property
    def tenant_slug(self) -> str:
        return self.tenant.slug if self.tenant is not None else DEFAULT_TENANT_SLUG

    @property
    def issuer(self) -> str:
        return self.request.app[SETTINGS].issuer

    @property
    def csrf_token(self) -> str:
        return self.request.app[CSRF].token(self.csrf_seed, self.tenant_slug, self.browser_value)

    @property
    def container(self) -> Any:
        return self.request.app[CONTAINER]

    @property
    def display_name(self) -> str:
        if self.branding.display_name:
            return self.branding.display_name
        if self.tenant is not None and self.tenant.slug != DEFAULT_TENANT_SLUG:
            return self.tenant.name
        return "identity"

    @property
    def next_url(self) -> str:
        """Where a finished sign-in goes: ``return_to``, else the account page."""
        if self.has_return_to:
            return self.return_to
        return self.url(DEFAULT_RETURN_TO)

    def gettext(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    def url(self, path: str, **params: str | None) -> str:
        """A path of the pages that keeps the flow's tenant, language and return_to."""
        query: dict[str, str] = {}
        if self.tenant_slug != DEFAULT_TENANT_SLUG:
            query["tenant"] = self.tenant_slug
        if self.explicit_lang:
            query["lang"] = self.explicit_lang
        if self.has_return_to:
            query["return_to"] = self.return_to
        for name, value in params.items():
            if value is None:
                query.pop(name, None)
            else:
                query[name] = value
        return f"{path}?{urlencode(query)}" if query else path

    async def form(self) -> Form:
        """The posted form, after the origin and CSRF checks (403 when either fails)."""
        if is_cross_site(self.request, self.issuer):
            raise Problem(403, "csrf_failed", "Forbidden", "The form came from another site.")
        form = await read_form(self.request)
        ok = self.request.app[CSRF].check(
            form.get(CSRF_FIELD),
            None if self.csrf_is_new else self.csrf_seed,
            self.tenant_slug,
            self.browser_value,
        )
        if not ok:
            raise Problem(403, "csrf_failed", "Forbidden", "The form has expired; reload it.")
        return form

    # --- answering -------------------------------------------------------------------
    def set_cookie(self, name: str, value: str, max_age: int | None, path: str = "/") -> None:
        self.cookies_to_set.append((name, value, max_age, path))

    def clear_cookie(self, name: str, path: str = "/") -> None:
        self.cookies_to_clear.append((name, path))

    def render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        env = aiohttp_jinja2.get_env(self.request.app)
        # Rendering is synchronous: no other request can render in between.
        env.install_gettext_translations(self.translations, newstyle=True)  # type: ignore[attr-defined]
        html = env.get_template(template).render(page=self, **context)
        response = web.Response(text=html, status=status, content_type="text/html")
        return self._finish(response)

    def redirect(self, location: str) -> web.Response:
        return self._finish(
            web.Response(status=self.redirect_status, headers={"Location": location})
        )

    def _finish(self, response: web.Response) -> web.Response:
        add_page_headers(response, self.branding.logo_url)
        issuer = self.issuer
        if self.csrf_is_new:
            set_cookie(response, CSRF_COOKIE, self.csrf_seed, issuer=issuer, max_age=CSRF_MAX_AGE)
        for name, path in self.cookies_to_clear:
            clear_cookie(response, name, issuer=issuer, path=path)
        for name, value, max_age, path in self.cookies_to_set:
            set_cookie(response, name, value, issuer=issuer, max_age=max_age, path=path)
        return response


def _seed(request: web.Request) -> tuple[str, bool]:
    seed = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(seed) <= 64 and seed.isascii():
        return seed, False
    return new_csrf_seed(), True


async def load_page(
    request: web.Request, *, authenticate: bool = True, tenant: Tenant | None = None
) -> Page:
    """The page of this request (of ``?tenant=``, unless ``tenant`` is given); an unknown
    tenant raises (a 404 page)."""
    container = request.app[CONTAINER]
    settings = request.app[SETTINGS]
    if tenant is None:
        tenant = await container.resolve_tenant()(request.query.get("tenant"))
    page = bare_page(request, tenant)
    if authenticate:
        value = request.cookies.get(browser_cookie_name(tenant.slug))
        if value:
            page.browser_value = value
            page.principal = await container.authenticate_browser()(tenant, value)
    raw_return_to = request.query.get("return_to")
    if raw_return_to:
        page.return_to = safe_return_to(raw_return_to, settings.policy.oauth_redirect_allowlist)
        page.has_return_to = page.return_to != DEFAULT_RETURN_TO
    request[PAGE] = page
    return page


def bare_page(request: web.Request, tenant: Tenant | None) -> Page:
    """A page without a browser session (also the error pages' fallback)."""
    branding = Branding.of(tenant.settings if tenant is not None else {})
    lang = request.query.get("lang")
    locale = i18n.negotiate(lang, branding.default_locale, request.headers.get("Accept-Language"))
    seed, is_new = _seed(request)
    return Page(
        request=request,
        tenant=tenant,
        branding=branding,
        locale=locale,
        translations=i18n.translations(locale),
        csrf_seed=seed,
        csrf_is_new=is_new,
        explicit_lang=i18n.supported(lang),
    )
