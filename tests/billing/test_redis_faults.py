"""Redis faults under load, end to end: no 500, no overdraft, balance == ledger.

Each test starts its own `redis-server` (free port, temporary directory, AOF on), kills it
with SIGKILL and restarts it, from its AOF or EMPTY (data loss), while gateways on one
PostgreSQL serve real HTTP traffic against a slow fake upstream of this module. The
shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
import redis
from aiohttp import web

from aigateway.config import Config
from aigateway.money import request_cost, to_units
from tests.support.servers import ServerThread, free_port

IN, OUT = to_units("0.01"), to_units("10")  # TMT per 1M tokens: the output dominates the cost
MAX_TOKENS = 100


class PrivateRedis:
    """A redis-server of this test only: `kill` is SIGKILL, `start(empty=True)` loses the data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, *, empty: bool = False) -> float:
        """Start (again) and return the moment it answered PING."""
        if empty:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return time.monotonic()
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    assert self.proc.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> float:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        return time.monotonic()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


class FakeUpstream:
    """An OpenAI-compatible upstream that answers after `{ms}` of model `slow-{ms}`, billing
    exactly `max_tokens` output tokens, and counts the requests it is holding."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.served = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        delay = int(re.fullmatch(r"slow-(\d+)", body["model"]).group(1)) / 1000
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        self.served += 1
        out = body.get("max_tokens") or 16
        return web.json_response({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * out},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out},
        })


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream()
    server = ServerThread(fake.app).start()
    fake.url = server.url
    yield fake
    server.stop()


def config(upstream: FakeUpstream, pg_url: str, redis_url: str, **redis_extra) -> Config:
    def model(name: str, ms: int) -> dict:
        return {"name": name, "type": "chat", "input_price": "0.01", "output_price": "10",
                "max_output_tokens": 1024, "context_length": 8192,
                "routes": [{"provider": "fake", "model": f"slow-{ms}"}]}

    return Config.model_validate({
        "database": {"url": pg_url},
        "redis": {"url": redis_url, "connect_timeout": 0.5, "socket_timeout": 1.0, "pool_timeout": 5.0,
                  **redis_extra},
        "billing": {"flush_interval": 0.02},
        "providers": {"fake": {"base_url": upstream.url + "/v1"}},
        "models": [model("fast", 50), model("medium", 150), model("slow", 3000), model("hold-open", 6000)],
        "discover_ollama": False,
    })


@dataclass
class Answer:
    status: int
    started: float
    ended: float
    headers: dict
    body: dict

    @property
    def cost(self) -> int:
        usage = self.body["usage"]
        return request_cost(usage["prompt_tokens"], usage["completion_tokens"], IN, OUT)


BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}


async def ask(session: aiohttp.ClientSession, gw, key: str, model: str) -> Answer:
    started = time.monotonic()
    async with session.post(gw.base_url + "/chat/completions", data=orjson.dumps({"model": model, **BODY}),
                            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
        body = orjson.loads(await r.read())
        return Answer(r.status, started, time.monotonic(), dict(r.headers), body)


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def wave(gws, key: str, model: str, n: int) -> list[Answer]:
    async with session() as s:
        return await asyncio.gather(*(ask(s, gws[i % len(gws)], key, model) for i in range(n)))


def hold_size(gw, model: str) -> int:
    """What one request holds, read from the 402 of a customer without money."""
    _, key = gw.customer(f"probe-{time.monotonic_ns()}@example.com", credit=None)
    [answer] = asyncio.run(wave([gw], key, model, 1))
    assert answer.status == 402, answer.body
    return to_units(re.search(r"may cost up to ([0-9.]+) TMT", answer.body["error"]["message"]).group(1))


def check_unavailable(answer: Answer) -> None:
    """A 503 in OpenAI's error JSON with a Retry-After the message agrees with."""
    assert answer.status == 503
    assert set(answer.body) == {"error"} and set(answer.body["error"]) == {"message", "type", "param", "code"}
    assert answer.body["error"]["code"] == "billing_unavailable"
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 10
    assert f"Retry in {retry_after} s" in answer.body["error"]["message"]


def check_books(gw, cid: int, start: int, answers: list[Answer]) -> int:
    """Every 200 charged exactly its cost once, nothing else; balance >= 0 and == ledger."""
    gw.flush()
    balance = gw.balance(cid)
    assert balance >= 0
    assert balance == gw.ledger_sum(cid)
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing
    ok = [a for a in answers if a.status == 200]
    charges = gw.sql("SELECT amount FROM ledger_entries WHERE customer_id = :cid AND kind = 'charge'", cid=cid)
    assert sorted(-c.amount for c in charges) == sorted(a.cost for a in ok)
    assert balance == start - sum(a.cost for a in ok)
    return balance


def test_400_requests_in_flight_on_one_replica_with_a_small_pool(pg_url, private_redis, upstream, start_gateway):
    # 8 pooled connections for 400 concurrent requests: they wait for a connection, never fail
    # (a generous pool_timeout: on a loaded 2-core machine the queue for 8 connections is slow).
    gw = start_gateway(config(upstream, pg_url, private_redis.url, max_connections=8, pool_timeout=15))
    start = to_units("10")
    cid, key = gw.customer("many@example.com", credit="10")
    upstream.peak = 0
    answers = asyncio.run(wave([gw], key, "slow", 400))
    statuses = [a.status for a in answers]
    assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}
    assert upstream.peak >= 300  # they really were in flight at once (holds open together)
    check_books(gw, cid, start, answers)
    print(f"\n400 in flight: statuses {set(statuses)}, upstream peak {upstream.peak} at once, 8 pooled connections")


def test_redis_killed_and_restarted_from_its_aof_under_load(pg_url, private_redis, upstream, start_gateway):
    gw = start_gateway(config(upstream, pg_url, private_redis.url))
    hold = hold_size(gw, "medium")
    rich_start, poor_start = to_units("10"), 30 * hold + hold // 2
    rich, rich_key = gw.customer("rich@example.com", credit="10")
    poor, poor_key = gw.customer("poor@example.com", credit=None)
    gw.credit(poor, f"{poor_start / 1_000_000:.6f}", "poor-credit")
    stop = asyncio.Event()
    times: dict[str, float] = {}

    async def worker(s, key: str, out: list[Answer]) -> None:
        while not stop.is_set():
            out.append(await ask(s, gw, key, "medium"))

    async def run() -> tuple[list[Answer], list[Answer]]:
        rich_answers: list[Answer] = []
        poor_answers: list[Answer] = []
        async with session() as s:
            tasks = [asyncio.create_task(worker(s, rich_key, rich_answers)) for _ in range(12)]
            tasks += [asyncio.create_task(worker(s, poor_key, poor_answers)) for _ in range(4)]
            await asyncio.sleep(1.0)  # load before the fault
            times["down"] = await asyncio.to_thread(private_redis.kill)
            while not any(a.status == 503 for a in rich_answers + poor_answers):  # the outage is seen
                assert time.monotonic() - times["down"] < 10
                await asyncio.sleep(0.02)
            times["up"] = await asyncio.to_thread(private_redis.start)
            await asyncio.sleep(2.0)  # load after the restart...
            # ...until the small balance is spent down (slow on a loaded machine), bounded
            while not any(a.status == 402 and a.started > times["up"] for a in poor_answers):
                assert time.monotonic() - times["up"] < 30, "the small balance was never spent down"
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
        return rich_answers, poor_answers

    rich_answers, poor_answers = asyncio.run(run())
    answers = rich_answers + poor_answers
    statuses = {s: [a.status for a in answers].count(s) for s in {a.status for a in answers}}
    assert set(statuses) <= {200, 402, 503}, statuses
    for a in answers:
        if a.status == 503:
            check_unavailable(a)
    # Only requests that began while Redis was down were refused; none after it came back
    # (stale pooled connections are retried once on a fresh connection).
    assert all(a.started < times["up"] for a in answers if a.status == 503)
    after = [a for a in rich_answers if a.started > times["up"]]
    assert after and all(a.status == 200 for a in after)
    check_books(gw, rich, rich_start, rich_answers)
    poor_left = check_books(gw, poor, poor_start, poor_answers)
    assert poor_left < hold  # the small balance was spent down to less than one hold, not below zero
    print(f"\nAOF restart: {len(answers)} requests {statuses}; Redis down {times['up'] - times['down']:.2f} s; "
          f"poor balance {poor_start} -> {poor_left} units")


def test_redis_restarted_empty_with_holds_open(pg_url, private_redis, upstream, start_gateway):
    """Two replicas; holds open on A; Redis loses everything; B must not accept the forgotten money."""
    a, b = (start_gateway(config(upstream, pg_url, private_redis.url)) for _ in range(2))
    hold = hold_size(a, "hold-open")
    start = 10 * hold + hold // 2
    cid, key = a.customer("small@example.com", credit=None)
    a.credit(cid, f"{start / 1_000_000:.6f}", "small-credit")

    async def run():
        async with session() as s:
            # Wave 1: 14 requests on A, 10 fit; their holds stay open for 6 s at the upstream.
            first = [asyncio.create_task(ask(s, a, key, "hold-open")) for _ in range(14)]
            deadline = time.monotonic() + 10
            while sum(t.done() for t in first) < 4 or upstream.in_flight < 10:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await asyncio.to_thread(private_redis.kill)
            await asyncio.to_thread(private_redis.start, empty=True)  # data loss
            # Wave 2, at once: every replica refuses (503) rather than hold against the full balance.
            second = await asyncio.gather(*(ask(s, [a, b][i % 2], key, "fast") for i in range(14)))
            # Poll until the recovery window is over; then the re-registered holds refuse with 402.
            polls = []
            while True:
                polls.append(await ask(s, b, key, "fast"))
                if polls[-1].status != 503:
                    break
                assert time.monotonic() < deadline + 10
                await asyncio.sleep(0.1)
            third = await asyncio.gather(*(ask(s, [a, b][i % 2], key, "fast") for i in range(14)))
            open_during = upstream.in_flight
            return await asyncio.gather(*first), second, polls, third, open_during

    first, second, polls, third, open_during = asyncio.run(run())
    assert open_during == 10  # wave 1 was still holding while waves 2 and 3 ran
    assert sorted(x.status for x in first) == [200] * 10 + [402] * 4
    assert {x.status for x in second} <= {503, 402} and any(x.status == 503 for x in second)
    for x in second + polls:
        if x.status == 503:
            check_unavailable(x)
    assert polls[-1].status == 402 and {x.status for x in third} == {402}
    balance = check_books(a, cid, start, first + second + polls + third)
    assert balance == b.balance(cid)
    statuses = [x.status for x in first + second + polls + third]
    print(f"\nEmpty restart: {len(statuses)} requests { {s: statuses.count(s) for s in set(statuses)} }; "
          f"balance {start} -> {balance} units (hold {hold})")


def test_redis_down_gives_503_in_openai_json_also_through_the_sdk(pg_url, private_redis, upstream,
                                                                  start_gateway):
    private_redis.kill()  # down before the gateway's first request
    gw = start_gateway(config(upstream, pg_url, private_redis.url))
    cid, key = gw.customer("down@example.com")
    [answer] = asyncio.run(wave([gw], key, "fast", 1))
    check_unavailable(answer)
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fast", messages=BODY["messages"], max_tokens=MAX_TOKENS)
    assert raised.value.status_code == 503 and raised.value.code == "billing_unavailable"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    private_redis.start()  # back: the next request goes through (no restart of the gateway)
    reply = client.chat.completions.create(model="fast", messages=BODY["messages"], max_tokens=MAX_TOKENS)
    assert reply.usage.completion_tokens == MAX_TOKENS
    private_redis.kill()  # and down again, after the pool had live connections
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fast", messages=BODY["messages"], max_tokens=MAX_TOKENS)
    assert raised.value.status_code == 503
    client.close()
    gw.flush()
    assert gw.balance(cid) == gw.ledger_sum(cid) == to_units("10") - request_cost(10, MAX_TOKENS, IN, OUT)
    private_redis.start()  # reconcile reads the holds in Redis too
    assert gw.reconcile() == []  # `aigateway admin reconcile` finds nothing
