"""The hosted pages (section 16): an entrypoint beside ``http/`` over the same use cases.

``setup(app, settings)`` adds the Jinja2 environment (through aiohttp-jinja2,
autoescaping on, the package's templates overridable from
``IDENTITY_UI_TEMPLATES_DIR``), the routes under ``/ui/``, the static files
and the middleware that renders the pages' errors as pages.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from identity.entrypoints.http.handlers.providers import PAGE_FINISHER
from identity.entrypoints.pages import account, handlers, organizations, passkeys, providers
from identity.entrypoints.pages.errors import page_errors
from identity.entrypoints.pages.page import CSRF
from identity.entrypoints.pages.security import CsrfTokens
from identity.entrypoints.settings import Settings

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

__all__ = ["page_errors", "setup"]


def environment_loader(settings: Settings) -> jinja2.BaseLoader:
    loaders: list[jinja2.BaseLoader] = []
    if settings.ui_templates_dir:
        loaders.append(jinja2.FileSystemLoader(settings.ui_templates_dir))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    return jinja2.ChoiceLoader(loaders)


def setup(app: web.Application, settings: Settings) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=environment_loader(settings),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    app[CSRF] = CsrfTokens(settings.secret_key.value)
    app.add_routes(handlers.routes)
    app.add_routes(account.routes)
    app.add_routes(passkeys.routes)
    app.add_routes(organizations.routes)
    app.add_routes(providers.routes)
    app[PAGE_FINISHER] = providers.finish
    app.router.add_get("/ui/brand.css", handlers.brand_css)
    app.router.add_static("/ui/static/", STATIC_DIR, name="ui-static", append_version=False)
