"""Outgoing e-mail for the portal (reset and verification links) through the SMTP server
of the `[smtp]` config section; without it the portal sends nothing and the operator's
`admin portal set-password` stays the way to recover an account.

Mail goes out in the background: the page answers at once and equally fast whether or
not an address has an account (a slower answer would tell who is a customer). The
password is read from the environment variable `password_env` names, never from the
file, and never appears in a log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from aiohttp import web
from pydantic import ConfigDict, Field

from aigateway.config import Strict

log = logging.getLogger(__name__)


class SmtpSettings(Strict):
    """The `[smtp]` section of the config file."""

    model_config = ConfigDict(populate_by_name=True)  # merged with Strict's extra="forbid"

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the password
    sender: str = Field(alias="from")  # e.g. "AI Gateway <no-reply@example.com>"
    starttls: bool = True  # upgrade the connection with STARTTLS (port 587); false: plain (a local relay)
    timeout: float = Field(default=20.0, gt=0)


class Mailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._tasks: set[asyncio.Task] = set()

    def send_later(self, to: str, subject: str, body: str) -> None:
        """Queue one plain-text message; failures are logged (without the address), not raised."""
        task = asyncio.get_running_loop().create_task(self._send(to, subject, body))
        self._tasks.add(task)  # keep a reference until done: the loop holds tasks weakly
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the messages in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid()
        message.set_content(body)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("portal e-mail not sent: %s (SMTP %s:%s)", type(exc).__name__, self.settings.host,
                        self.settings.port)

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                password = os.environ.get(s.password_env or "", "")
                smtp.login(s.username, password)
            smtp.send_message(message)


MAILER = web.AppKey("portal.mailer", Mailer)  # absent without [smtp]


def mailer_from(section: dict) -> Mailer | None:
    """The mailer for a config's `[smtp]` section; None when the section is empty."""
    return Mailer(SmtpSettings.model_validate(section)) if section else None
