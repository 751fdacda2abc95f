"""Where a page's sign-in ends: a browser session, or the second-factor page."""

from __future__ import annotations

from aiohttp import web

from identity.application.first_factor import MfaRequired, SignInResult
from identity.application.tokens import TokenPair
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages.page import Page
from identity.entrypoints.pages.security import browser_cookie_name, mfa_cookie_name


async def finish_sign_in(page: Page, result: SignInResult) -> web.Response:
    """A first or second factor passed: a browser session, or the second-factor page."""
    assert page.tenant is not None
    slug = page.tenant.slug
    if isinstance(result, MfaRequired):
        page.set_cookie(mfa_cookie_name(slug), result.mfa_token, result.expires_in, path="/ui/")
        return page.redirect(page.url("/ui/mfa"))
    return await start_browser_session(page, result)


async def start_browser_session(page: Page, pair: TokenPair) -> web.Response:
    assert page.tenant is not None
    slug = page.tenant.slug
    if page.browser_value:
        # Another sign-in in this browser: the session it held ends first.
        await page.container.end_browser_session()(
            page.tenant, page.browser_value, client_info(page.request)
        )
    value = await page.container.start_browser_session()(pair)
    page.set_cookie(browser_cookie_name(slug), value, pair.refresh_token_expires_in)
    page.clear_cookie(mfa_cookie_name(slug), path="/ui/")
    return page.redirect(page.next_url)
