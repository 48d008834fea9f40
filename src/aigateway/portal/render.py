"""Jinja2 templates (autoescaped) and the filters the pages share.

Every filter formats for the page's locale (the `locale` template variable), through
portal.formatting: one place decides how money, numbers and times look.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from aigateway.portal import formatting, i18n

TEMPLATES = Path(__file__).parent / "templates"


def _locale(ctx) -> str:
    return ctx.get("locale") or "en"


@jinja2.pass_context
def tmt(ctx, units: int | None, context: str = "balance", sign: bool = False):
    """Money as HTML: the amount for `context`, the exact value in its title when rounded."""
    return formatting.tmt_html(units, context, _locale(ctx), sign=sign)


@jinja2.pass_context
def tmt_text(ctx, units: int | None, context: str = "balance", sign: bool = False) -> str:
    return formatting.tmt_text(units, context, _locale(ctx), sign=sign)


@jinja2.pass_context
def tmt_input(ctx, units: int | None) -> str:
    """Money as a form field's value (exact, no grouping)."""
    return formatting.tmt_input(units, _locale(ctx))


@jinja2.pass_context
def when(ctx, value, with_time: bool = True) -> str:
    return formatting.when(value, _locale(ctx), with_time=with_time)


@jinja2.pass_context
def time_utc(ctx, value) -> str:
    return formatting.time_utc(value, _locale(ctx))


@jinja2.pass_context
def number(ctx, value) -> str:
    return formatting.number(value, _locale(ctx))


@jinja2.pass_context
def day_label(ctx, value) -> str:
    return formatting.day_label(value, _locale(ctx))


def make_env(translations=None) -> jinja2.Environment:
    """The templates in one language (`translations`: a gettext catalog; None is English)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its file name
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.policies["ext.i18n.trimmed"] = True  # msgids without the template's line breaks
    # newstyle: translations are autoescaped like any other output, %(name)s filled in safely
    # install_gettext_translations is added to the environment by the i18n extension at run time
    env.install_gettext_translations(  # type: ignore[attr-defined]
        translations or i18n.load(i18n.DEFAULT), newstyle=True)
    env.filters.update(tmt=tmt, tmt_text=tmt_text, tmt_input=tmt_input,
                       when=when, time_utc=time_utc, number=number,
                       day_label=day_label)
    return env
