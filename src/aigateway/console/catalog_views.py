"""The Providers and models page: list, add/edit, test a route. Rules live in console.catalog_admin."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from aigateway.appkeys import CONFIG, GATEWAY
from aigateway.console import catalog_admin as admin
from aigateway.console.web import MAIN, ConsoleRefusal, actor_of, engine_of, redirect, render, session_of
from aigateway.pricing.fetcher import Fetcher
from aigateway.pricing.settings import PricingSettings, load_settings


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/providers", page)
    r.add_post("/providers", save_provider)
    r.add_post("/models", save_model)
    r.add_post("/models/test", test_model)
    r.add_get("/providers/delete", delete_page)
    r.add_post("/providers/delete", delete)


def _config_names(request: web.Request) -> tuple[set[str], set[str]]:
    config = request.app[MAIN][CONFIG]
    return set(config.providers), {m.name for m in config.models}


async def page(request: web.Request, *, status: int = 200, errors: dict | None = None, provider_form=None,
               model_form=None, test=None) -> web.Response:
    config_providers, config_models = _config_names(request)
    catalog = request.app[MAIN][GATEWAY].catalog
    async with engine_of(request).connect() as conn:
        providers = await admin.provider_rows(conn)
        models = await admin.model_rows(conn)
    edit_p = request.query.get("provider")
    edit_m = request.query.get("model")
    if provider_form is None:
        row = next((p for p in providers if p.name == edit_p), None)
        provider_form = {"name": row.name, "base_url": row.base_url, "api_key_env": row.api_key_env or ""} \
            if row else {"name": "", "base_url": "", "api_key_env": ""}
    if model_form is None:
        row = next((m for m in models if m.name == edit_m), None)
        model_form = {"name": "", "type": "chat", "routes": "", "context_length": "", "max_output_tokens": "",
                      "input_price": "", "output_price": "", "price_source": "", "price_source_model": "",
                      "markup": ""}
        if row is not None:
            model_form.update(name=row.name, type=row.type, context_length=row.context_length or "",
                              max_output_tokens=row.max_output_tokens or "", price_source=row.price_source or "",
                              price_source_model=row.price_source_model or "", markup=row.markup or "",
                              routes="\n".join(f"{r['provider']} {r['model']} {r.get('priority', 1)} "
                                               f"{r.get('weight', 1)}" for r in json.loads(row.routes)))
    notice = {"provider": "Provider saved.", "model": "Model saved. Every replica serves it within a few "
              "seconds.", "follows": "Model saved. Its price comes from the source's next fetch (asked for now); "
              "every replica serves it once priced.", "deleted-provider": "Provider deleted.",
              "deleted-model": "Model deleted. Every replica stops serving it within a few seconds; its usage "
              "and price history stay."}.get(request.query.get("m", ""))
    return render(request, "catalog.html", status=status, tab="providers", providers=providers,
                  key_source=admin.key_source, config_providers=sorted(config_providers),
                  config_provider_rows=sorted(request.app[MAIN][CONFIG].providers.items()),
                  config_models=sorted(config_models), catalog=catalog, db_models=models, errors=errors or {},
                  provider_form=provider_form, model_form=model_form, test=test, notice=notice,
                  sources=sorted(_sources(request)), follows={m.name: m for m in models if m.price_source},
                  default_markup=_settings(request).markup)


def _settings(request: web.Request) -> PricingSettings:
    # Read from the config like pricing's own setup does (validated at start-up, so it cannot fail
    # here); not through pricing's web module: a concern never imports another's web.
    return load_settings(request.app[MAIN][CONFIG])


def _sources(request: web.Request) -> frozenset[str]:
    return frozenset(_settings(request).sources)


def _text(form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def save_provider(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {k: _text(form, k) for k in ("name", "base_url", "api_key_env")}
    try:
        async with engine_of(request).begin() as conn:
            await admin.save_provider(conn, actor=actor_of(request), api_key=_text(form, "api_key"),
                                      config_names=_config_names(request)[0], **fields)
    except admin.Invalid as exc:
        # The typed key is NOT echoed back into the form.
        return await page(request, status=400, errors=exc.errors, provider_form=fields)
    return redirect("/providers?m=provider")


async def save_model(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {k: _text(form, k) for k in ("name", "type", "routes", "context_length", "max_output_tokens",
                                          "input_price", "output_price", "price_source", "price_source_model",
                                          "markup")}
    config_providers, config_models = _config_names(request)
    try:
        async with engine_of(request).begin() as conn:
            known = config_providers | {p.name for p in await admin.provider_rows(conn)}
            follows = await admin.save_model(
                conn, actor=actor_of(request), name=fields["name"], type_=fields["type"],
                routes_text=fields["routes"], context_length=fields["context_length"],
                max_output_tokens=fields["max_output_tokens"], input_price=fields["input_price"],
                output_price=fields["output_price"], providers=known, config_names=config_models,
                price_source=fields["price_source"], price_source_model=fields["price_source_model"],
                markup=fields["markup"], sources=_sources(request))
    except admin.Invalid as exc:
        return await page(request, status=400, errors=exc.errors, model_form=fields)
    if follows:  # the first price (or the new markup) comes from the next fetch: ask for it now
        main = request.app[MAIN]
        await Fetcher(engine_of(request), main[CONFIG], _settings(request)).request()
    # This replica at once; the others on their next refresh.
    await request.app[MAIN][GATEWAY].catalog.refresh(engine_of(request))
    return redirect("/providers?m=follows" if follows else "/providers?m=model")


async def test_model(request: web.Request) -> web.Response:
    """A 1-token request through one route of a model the catalog knows (refreshed first)."""
    form = await request.post()
    gateway = request.app[MAIN][GATEWAY]
    await gateway.catalog.refresh(engine_of(request))
    model = gateway.catalog.get(_text(form, "model"))
    route_key = _text(form, "route")
    route = next((r for r in (model.routes if model else []) if r.key == route_key), None)
    if model is None or route is None:
        return await page(request, status=400, errors={"test": "No such model or route."})
    result = await admin.test_route(gateway.upstream, route)
    return await page(request, test={"model": model.name, "route": route.key, "ok": result.ok,
                                     "answer": result.answer, "millis": result.millis})


KINDS = ("provider", "model")


async def delete_page(request: web.Request) -> web.Response:
    """Asks before deleting (no script: a page with the consequences and one button)."""
    session = session_of(request)
    if session is None or not session.operator.can_change:
        raise ConsoleRefusal(403, "Your role (viewer) can look but not change anything.")
    kind = request.query.get("kind", "")
    name = request.query.get("name", "")
    if kind not in KINDS or not name:
        raise web.HTTPNotFound()
    async with engine_of(request).connect() as conn:
        rows = await (admin.provider_rows(conn) if kind == "provider" else admin.model_rows(conn))
        models = await admin.model_rows(conn) if kind == "provider" else []
    if not any(r.name == name for r in rows):
        raise web.HTTPNotFound()
    return render(request, "confirm_delete.html", tab="providers", kind=kind, name=name,
                  users=admin.routed_by(models, name) if kind == "provider" else [],
                  refresh=request.app[MAIN][GATEWAY].catalog.refresh_interval)


async def delete(request: web.Request) -> web.Response:
    form = await request.post()
    kind, name = _text(form, "kind"), _text(form, "name")
    if kind not in KINDS:
        raise web.HTTPNotFound()
    if _text(form, "confirm") != "yes":  # only the confirmation page's button sends it
        return redirect(f"/providers/delete?{urlencode({'kind': kind, 'name': name})}")
    config_providers, config_models = _config_names(request)
    try:
        async with engine_of(request).begin() as conn:
            if kind == "provider":
                await admin.delete_provider(conn, actor=actor_of(request), name=name, config_names=config_providers)
            else:
                await admin.delete_model(conn, actor=actor_of(request), name=name, config_names=config_models)
    except admin.Invalid as exc:
        return await page(request, status=409, errors=exc.errors)
    await request.app[MAIN][GATEWAY].catalog.refresh(engine_of(request))  # this replica at once
    return redirect(f"/providers?m=deleted-{kind}")
