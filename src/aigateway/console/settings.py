"""The `[admin]` section: where the console listens. Default: loopback only, so exposing
the API port never exposes the console."""

from __future__ import annotations

from pydantic import Field

from aigateway.config import Strict


class AdminSettings(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 = any free port (tests); the bound port is logged.
    port: int = Field(default=8090, ge=0, le=65535)
    # An operator session ends this long after log-in (absolute, not sliding).
    session_hours: int = Field(default=12, ge=1, le=168)
    # Behind a proxy: client IP for throttling from X-Forwarded-For.
    trust_forwarded_for: bool = False
    # The console's public address (for the enrolment link the CLI prints).
    public_url: str | None = None

    def base_url(self, port: int | None = None) -> str:
        return (self.public_url or f"http://{self.host}:{port or self.port}").rstrip("/")
