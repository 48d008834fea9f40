"""Upstream OpenAI-compatible providers: routes, failover order, pooled HTTP client."""
