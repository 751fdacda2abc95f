"""The messages the pages use, extracted from the templates and the pages' code.

``python -m identity.entrypoints.pages.catalogue`` writes ``locale/messages.pot``
and merges it into every language's ``.po`` (new messages arrive untranslated;
a test fails until each one is translated).
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from identity.domain.branding import LOCALES
from identity.entrypoints.pages.i18n import DEFAULT_LOCALE, LOCALE_DIR, catalogue_path

PACKAGE_DIR = Path(__file__).parent
METHODS = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extract() -> Catalog:
    catalog = Catalog(project="identity", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(PACKAGE_DIR), METHODS, options_map=OPTIONS, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def main() -> None:
    template = extract()
    with (LOCALE_DIR / "messages.pot").open("wb") as out:
        write_po(out, template, omit_header=True, sort_output=True)
    for locale in LOCALES:
        if locale == DEFAULT_LOCALE:
            continue
        path = catalogue_path(locale)
        if path.exists():
            with path.open("rb") as po:
                catalog = read_po(po, locale=locale)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=locale)
        catalog.update(template, no_fuzzy_matching=True)
        with path.open("wb") as out:
            write_po(out, catalog, omit_header=True, sort_output=True, ignore_obsolete=True)


if __name__ == "__main__":
    main()
