"""The portal's languages: English, Russian, Turkmen (Latin script).

Catalogs are gettext .po files under portal/locale/<lang>/LC_MESSAGES/messages.po,
committed as text and compiled in memory when the application starts (Babel's
read_po/write_mo), so there is no build step and no .mo file to forget. English is
the source language: its msgids are the English text.

Choice of language, in order: the `gw_lang` cookie (set by the language switcher,
GET /lang/<code>, kept a year), then the browser's Accept-Language, then English.

Invariant: every string a template shows is in the catalogs, translated in every
language (tests/portal/test_i18n.py fails otherwise). API error messages stay English.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("en", "ru", "tk")
DEFAULT = "en"
COOKIE = "gw_lang"
# Each language's name in itself, for the switcher.
NAMES = {"en": "English", "ru": "Русский", "tk": "Türkmençe"}


def N_(text: str) -> str:
    """Marks a string for the catalogs; it is translated where it is shown."""
    return text


# Messages made in code that does not translate them itself (the login handler's);
# listed here so they are in the catalogs, and translated when the page shows them.
RUNTIME_MESSAGES = (
    N_("Account created! Please login."),
    N_("You have been logged out."),
    N_("Please log in to continue."),
    N_("Enter your email and password."),
    N_("Wrong email or password."),
    N_("This account is disabled. Please contact support."),
    N_("Account created! We sent you a link to confirm your email. Please login."),
    N_("Your password was changed. Please log in with the new one."),
)


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"


def load(locale: str) -> NullTranslations:
    """The compiled catalog of `locale` (English: the msgids themselves)."""
    if locale == DEFAULT:
        return NullTranslations()
    with catalog_path(locale).open("rb") as f:
        catalog = read_po(f, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def negotiate(accept_language: str) -> str | None:
    """The best of LOCALES for an Accept-Language header, or None."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        base = tag.replace("_", "-").split("-")[0]
        if base in LOCALES:
            return base
    return None


def choose(cookie: str | None, accept_language: str) -> str:
    if cookie in LOCALES:
        return cookie
    return negotiate(accept_language) or DEFAULT


def language_name(locale: str) -> str:
    return NAMES.get(locale) or Locale.parse(locale).get_display_name(locale) or locale
