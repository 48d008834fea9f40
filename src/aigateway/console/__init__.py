"""The operator console: operator accounts with TOTP, an audit trail, and pages that run
the business through the same service functions the CLI calls, served on its own listener."""
