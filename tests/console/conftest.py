"""Console test helpers: a gateway with its admin listener, operators, a form client on the console."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyotp
import pytest
from sqlalchemy import update

from aigateway.console.operators import create_operator
from aigateway.console.tables import operators
from aigateway.console.web import CONSOLE_URL
from aigateway.portal.passwords import hash_password
from aigateway.twofactor import seeds
from tests.portal.conftest import PortalClient, browser, visitor  # noqa: F401 (fixtures)

OP_PASSWORD = "operator horse battery 42"


@dataclass(frozen=True)
class OperatorLogin:
    email: str
    password: str
    secret: str

    def code(self, offset_steps: int = 0) -> str:
        """The TOTP code of now (+ offset steps of 30 s): each step is accepted once."""
        return pyotp.TOTP(self.secret).at(time.time() + 30 * offset_steps)


def browser_log_in(page, op: OperatorLogin, offset_steps: int = 0) -> None:
    """Log `op` in through the console's log-in form (the page's base URL is the console)."""
    page.goto("/login")
    page.get_by_label("Email").fill(op.email)
    page.get_by_label("Password").fill(op.password)
    page.get_by_label("Authenticator code").fill(op.code(offset_steps))
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def serves(client, model: str) -> bool:
    """Whether the gateway behind an `openai.OpenAI` client answers a chat request for `model`."""
    import openai

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError:
        return False
    return True


class _Site:
    def __init__(self, url: str) -> None:
        self.url = url


def console_url(server) -> str:
    return server.app[CONSOLE_URL]


def make_operator(server, email: str, role: str = "admin") -> OperatorLogin:
    """An enrolled operator (enrolment itself is tested in test_auth)."""

    async def make():
        async with server.engine.begin() as conn:
            op_id, _token = await create_operator(conn, email, role)
            await conn.execute(update(operators).where(operators.c.id == op_id).values(
                status="active", password_hash=await hash_password(OP_PASSWORD), enrol_token_hash=None))
            stored = await conn.scalar(operators.select().with_only_columns(operators.c.totp_secret)
                                       .where(operators.c.id == op_id))
            return seeds.reveal(stored)  # encrypted when AIGATEWAY_SECRET_KEY is set

    return OperatorLogin(email, OP_PASSWORD, server.run(make()))


class ConsoleClient(PortalClient):
    def __init__(self, server) -> None:
        super().__init__(_Site(console_url(server)))

    def operator_login(self, op: OperatorLogin, offset_steps: int = 0):
        return self.form("/login", "/login", {"email": op.email, "password": op.password,
                                              "code": op.code(offset_steps)})


@pytest.fixture
def console(gateway):
    clients: list[ConsoleClient] = []

    def make() -> ConsoleClient:
        c = ConsoleClient(gateway)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
