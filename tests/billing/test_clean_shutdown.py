"""SIGTERM after traffic: every usage event is committed and the spool is left empty.

Regression: the server's signal handling used to cancel every task at once, which cut the
recorder's final commit and the spool's close short (a segment stayed behind although its
events were committed, and `admin reconcile` reported it).
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import ClientSession

from tests.billing.test_spool_faults import COST, Gateway, _billing, _setup, fake_upstream  # noqa: F401


# fake_upstream is a fixture imported above: pytest injects it by name (not a redefinition)
def test_sigterm_commits_everything_and_leaves_no_spool(fake_upstream, tmp_path):  # noqa: F811
    db_url = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    cid, key = asyncio.run(_setup(db_url, "1"))
    gw = Gateway(tmp_path, db_url, fake_upstream.url)
    gw.start()
    ids: list[str] = []

    async def traffic() -> None:
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
        async with ClientSession() as session:
            for _ in range(30):
                async with session.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=body,
                                        headers={"Authorization": f"Bearer {key}"}) as r:
                    assert r.status == 200
                    ids.append(r.headers["X-Request-Id"])

    try:
        asyncio.run(traffic())
        assert gw.stop(signal.SIGTERM) == 0
    finally:
        gw.kill()
    assert sorted(p.name for p in gw.spool.glob("*.spool")) == []
    billing = asyncio.run(_billing(db_url, cid, ids))
    assert all(billing["charges"].get(f"usage:{i}") == [-COST] for i in ids)
    assert billing["balance"] == billing["ledger"] == 1_000_000 - COST * len(ids)
    result = gw.reconcile()
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stdout + result.stderr
