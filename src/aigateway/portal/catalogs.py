"""The portal's message catalogs: extract every marked string, keep the .po files in step.

    python -m aigateway.portal.catalogs          # add new msgids to each .po (empty msgstr)

Extraction reads the templates (Jinja2's Babel extractor, trimmed like the templates
render) and the portal's Python (`_`, `N_`, `ngettext`). tests/portal/test_i18n.py runs
the same extraction and fails on any msgid a language lacks.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from aigateway.portal import i18n

PORTAL_DIR = Path(__file__).parent
METHODS = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"trimmed": "true", "extensions": "jinja2.ext.i18n"}}


# Concerns that plug their own templates into the portal (rendered with its catalogs).
PLUGGED_DIRS = [PORTAL_DIR.parent / "vouchers"]


def extract() -> Catalog:
    catalog = Catalog(project="aigateway portal")
    for directory in [PORTAL_DIR, *PLUGGED_DIRS]:
        for filename, lineno, message, comments, context in extract_from_dir(
                directory, METHODS, OPTIONS, keywords=DEFAULT_KEYWORDS):
            if directory != PORTAL_DIR:
                filename = f"{directory.name}/{filename}"
            catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def update() -> None:
    template = extract()
    for locale in i18n.LOCALES:
        if locale == i18n.DEFAULT:
            continue
        path = i18n.catalog_path(locale)
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=locale)
        else:
            catalog = Catalog(locale=locale, project="aigateway portal")
        catalog.update(template, no_fuzzy_matching=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, catalog, width=120, omit_header=False, sort_output=False)


if __name__ == "__main__":
    update()
