"""Money movement: the ledger, holds, charges and usage records."""
