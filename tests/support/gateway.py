"""A real gateway on 127.0.0.1 for tests, with helpers that act as the operator would."""

from __future__ import annotations

import shutil
import tempfile

from sqlalchemy import func, select, text

from aigateway.accounts.service import create_customer, create_key
from aigateway.accounts.tables import customers
from aigateway.app import create_app
from aigateway.appkeys import ENGINE, GATEWAY
from aigateway.billing.ledger import ledger_sum, post_entry
from aigateway.billing.tables import usage_records
from aigateway.config import Config
from aigateway.money import to_units
from tests.support.servers import ServerThread, reserve_port
from tests.support.waits import wait_until

_SPOOLS_IN_USE: set[str] = set()


class GatewayServer(ServerThread):
    def __init__(self, config: Config) -> None:
        sock = reserve_port()
        config.server.port = sock.getsockname()[1]  # so the portal's docs show the URL this test server really has
        self._own_spool = None
        # One usage spool per gateway: replicas share a database, and a test may copy a config
        # that already names the spool of a gateway it started.
        if config.billing.spool_dir is None or config.billing.spool_dir in _SPOOLS_IN_USE:
            self._own_spool = config.billing.spool_dir = tempfile.mkdtemp(prefix="aigw-spool-")
            _SPOOLS_IN_USE.add(self._own_spool)
        super().__init__(lambda: create_app(config), sock=sock)
        self.config = config

    def stop(self) -> None:
        super().stop()
        if self._own_spool is not None:
            _SPOOLS_IN_USE.discard(self._own_spool)
            shutil.rmtree(self._own_spool, ignore_errors=True)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gateway(self):
        return self.app[GATEWAY]

    @property
    def engine(self):
        return self.app[ENGINE]

    def customer(self, email: str, credit: str | None = "10", models: list[str] | None = None) -> tuple[int, str]:
        """Create a customer with a balance and an API key; returns (customer_id, key)."""

        async def make():
            async with self.engine.begin() as conn:
                cid = await create_customer(conn, email)
                if credit:
                    await post_entry(conn, customer_id=cid, amount=to_units(credit), kind="credit",
                                     reference=f"test-credit:{cid}")
                _, key = await create_key(conn, cid, "test", models)
            return cid, key.secret

        return self.run(make())

    def credit(self, customer_id: int, amount: str, reference: str) -> None:
        async def post():
            async with self.engine.begin() as conn:
                await post_entry(conn, customer_id=customer_id, amount=to_units(amount), kind="credit",
                                 reference=reference)

        self.run(post())

    def flush(self) -> None:
        """Write the pending usage batch now (instead of waiting for the group commit)."""
        if self.gateway.recorder is not None:
            self.run(self.gateway.recorder.flush())

    def balance(self, customer_id: int) -> int:
        self.flush()

        async def read():
            async with self.engine.connect() as conn:
                return await conn.scalar(select(customers.c.balance).where(customers.c.id == customer_id))

        return self.run(read())

    def ledger_sum(self, customer_id: int) -> int:
        async def read():
            async with self.engine.connect() as conn:
                return await ledger_sum(conn, customer_id)

        return self.run(read())

    def usage(self, customer_id: int) -> list:
        self.flush()

        async def read():
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(usage_records).where(usage_records.c.customer_id == customer_id)
                                          .order_by(usage_records.c.created_at))
                return rows.all()

        return self.run(read())

    def count_usage(self) -> int:
        """How many usage records the database holds (all customers), after a flush."""
        self.flush()

        async def read():
            async with self.engine.connect() as conn:
                return await conn.scalar(select(func.count()).select_from(usage_records))

        return self.run(read())

    def reconcile(self) -> list[str]:
        """What `aigateway admin reconcile` finds in this gateway's books (an empty list when they are clean)."""
        from aigateway.billing.reconcile import reconcile

        self.flush()
        redis = self.config.redis
        return self.run(reconcile(self.engine, redis_url=redis.url, redis_prefix=redis.key_prefix))

    def sql(self, query: str, **params):
        async def read():
            async with self.engine.connect() as conn:
                return (await conn.execute(text(query), params)).all()

        return self.run(read())

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        return wait_until(predicate, timeout=timeout, interval=interval)
