"""What a throttled customer reads: "please wait N seconds", in their language.

Every wait the portal shows (log-in, two-factor codes, voucher redemption) goes through
`wait_text`: the wait is rounded UP to whole seconds (never promise less than the
throttle will enforce, and never "0 seconds"), written as minutes and seconds, each with
its plural form from the catalog (ngettext: Russian has three forms, Turkmen one), and
put into the message of its kind. The msgids are marked here so the catalogs have them;
tests/portal/test_i18n.py fails when a language lacks one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from aigateway.portal.i18n import N_

Gettext = Callable[[str], str]
Ngettext = Callable[[str, str, int], str]

LOGIN = N_("Too many failed login attempts. Please wait %(span)s and try again.")
LOGIN_WRONG = N_("Wrong email or password. Too many failed attempts: wait %(span)s before the next try.")
CODES = N_("Too many wrong codes. Please wait %(span)s and try again.")
VOUCHER = N_("Too many voucher attempts. Please wait %(span)s and try again.")
KINDS = (LOGIN, LOGIN_WRONG, CODES, VOUCHER)


def _identity(text: str) -> str:
    return text


def _english_plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def whole_seconds(wait: float) -> int:
    """The wait shown: rounded up, at least 1 s."""
    return max(1, math.ceil(wait))


def span_text(wait: float, ngettext: Ngettext = _english_plural) -> str:
    """'45 seconds', '2 minutes 5 seconds', '5 minutes' (each part in its plural form)."""
    minutes, seconds = divmod(whole_seconds(wait), 60)
    parts = []
    if minutes:
        parts.append(ngettext("%(num)s minute", "%(num)s minutes", minutes) % {"num": minutes})
    if seconds or not minutes:
        parts.append(ngettext("%(num)s second", "%(num)s seconds", seconds) % {"num": seconds})
    return " ".join(parts)


def wait_text(kind: str, wait: float, gettext: Gettext = _identity, ngettext: Ngettext = _english_plural) -> str:
    """The message `kind` (one of KINDS, English msgid) for a wait of `wait` seconds, translated."""
    assert kind in KINDS, kind
    return gettext(kind) % {"span": span_text(wait, ngettext)}
