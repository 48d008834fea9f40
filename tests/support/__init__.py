"""Shared test machinery: real servers on 127.0.0.1, real databases."""
