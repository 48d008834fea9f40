"""Upstream faults at the API: streams and unary answers."""
