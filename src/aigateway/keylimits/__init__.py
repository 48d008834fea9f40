"""Per-key limits a customer or operator sets: spend cap, request/token rates, concurrency, expiry."""
