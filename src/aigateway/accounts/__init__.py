"""Customers and their API keys."""
