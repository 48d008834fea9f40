"""TOTP second factor shared by the operator console and the customer portal."""
