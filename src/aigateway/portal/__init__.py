"""The customer portal: sign-up, balance, usage, API keys, transactions, deposits, models and docs.

Server-rendered HTML (Jinja2, autoescaped) on the same aiohttp application as
the API. `web.setup(app)` plugs it in; nothing here is on the API's hot path.
"""
