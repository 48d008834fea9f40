"""Atomic attempt throttling shared by every concern (login, voucher redemption)."""
