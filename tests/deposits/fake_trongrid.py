"""A fake TronGrid-compatible API on 127.0.0.1 with the real JSON shapes.

- `GET /v1/accounts/{address}/transactions/trc20` answers the v1 envelope
  `{"data": [...], "success": true, "meta": {"at", "page_size", "fingerprint", "links": {"next"}}}`,
  honouring only_to, only_confirmed, contract_address, min_timestamp, order_by, limit and
  fingerprint paging (fingerprint and links.next only when another page follows).
- `GET /v1/contracts/{contract}/events` answers the same envelope with one Transfer event per
  transaction of that contract (`result.from/to` as 0x-hex, `result.value`), honouring
  event_name, only_confirmed, min_block_timestamp, order_by, limit and fingerprint paging.
- `POST /walletsolidity/gettransactioninfobyid` answers `{}` until the transaction is
  solidified, then a TransactionInfo: `receipt.result`, `log[]` with `address` as 40 hex
  digits (no 41 prefix), `topics` [Transfer signature, from, to as 32-byte hex], `data`.

Tests add transfers, flip them to solid, make the API misbehave (429, 5xx, garbage) and
read the requests it received.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from aigateway.deposits.tron import TRANSFER_TOPIC, address_from_bytes, address_hex

USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
SENDER = address_from_bytes(bytes.fromhex("5e9b8bd1b3e6c59d2f0c9e7b0a3d4c2f1e0d9c8b"))
OTHER_CONTRACT = address_from_bytes(bytes.fromhex("11" * 20))  # a token that also calls itself USDT


def _topic(address: str) -> str:
    return "0" * 24 + address_hex(address)


@dataclass
class FakeTx:
    tx_id: str
    to: str
    value: int
    contract: str = USDT
    symbol: str = "USDT"
    sender: str = SENDER
    block_timestamp: int = 0
    block_number: int = 0
    confirmed: bool = True  # in a confirmed block as far as the v1 listing goes
    solid: bool = False  # the solidity node knows it
    result: str = "SUCCESS"  # receipt.result; "REVERT" makes a failed transaction
    logs: list | None = None  # override the logs returned by gettransactioninfobyid
    listed: bool = True

    def listing(self) -> dict:
        return {
            "transaction_id": self.tx_id,
            "token_info": {"symbol": self.symbol, "address": self.contract, "decimals": 6,
                           "name": "Tether USD" if self.symbol == "USDT" else self.symbol},
            "block_timestamp": self.block_timestamp,
            "from": self.sender,
            "to": self.to,
            "type": "Transfer",
            "value": str(self.value),
        }

    def event(self) -> dict:
        return {
            "block_number": self.block_number,
            "block_timestamp": self.block_timestamp,
            "caller_contract_address": self.contract,
            "contract_address": self.contract,
            "event_index": 0,
            "event_name": "Transfer",
            "result": {"0": "0x" + address_hex(self.sender), "1": "0x" + address_hex(self.to), "2": str(self.value),
                       "from": "0x" + address_hex(self.sender), "to": "0x" + address_hex(self.to),
                       "value": str(self.value)},
            "result_type": {"from": "address", "to": "address", "value": "uint256"},
            "event": "Transfer(address indexed from, address indexed to, uint256 value)",
            "transaction_id": self.tx_id,
        }

    def info(self) -> dict:
        body = {
            "id": self.tx_id,
            "fee": 13844850,
            "blockNumber": self.block_number,
            "blockTimeStamp": self.block_timestamp,
            "contractResult": [""],
            "contract_address": "41" + address_hex(self.contract),
            "receipt": {"energy_fee": 13499850, "energy_usage_total": 64285, "net_fee": 345000,
                        "result": self.result, "energy_penalty_total": 49635},
        }
        if self.result == "SUCCESS":
            body["contractResult"] = ["0" * 63 + "1"]
            body["log"] = self.logs if self.logs is not None else [self.transfer_log()]
        else:
            body["result"] = "FAILED"
            body["resMessage"] = b"REVERT opcode executed".hex()
        return body

    def transfer_log(self, to: str | None = None, value: int | None = None, contract: str | None = None) -> dict:
        return {
            "address": address_hex(contract or self.contract),
            "topics": [TRANSFER_TOPIC, _topic(self.sender), _topic(to or self.to)],
            "data": format(self.value if value is None else value, "064x"),
        }


@dataclass
class Fault:
    status: int
    body: bytes
    path: str  # only requests whose path contains this
    headers: dict = field(default_factory=dict)


class FakeTronGrid:
    def __init__(self) -> None:
        self.txs: list[FakeTx] = []
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, str, dict, dict]] = []  # method, path, query, headers
        self.ignore_contract_filter = False  # misbehave: list every token
        self.ignore_only_to = False  # misbehave: list transfers to other addresses too
        self.repeat_across_pages = False  # each page repeats the previous page's last row
        self._lock = threading.Lock()
        self._block = itertools.count(60_000_000)
        self.url = ""

    # -- the chain, as tests drive it -------------------------------------------------------

    def transfer(self, to: str, value: int, **kw) -> FakeTx:
        with self._lock:
            ts = kw.pop("block_timestamp", None) or int(time.time() * 1000)
            tx = FakeTx(tx_id=kw.pop("tx_id", None) or secrets.token_hex(32), to=to, value=value,
                        block_timestamp=ts, block_number=next(self._block), **kw)
            self.txs.append(tx)
            return tx

    def solidify(self, tx: FakeTx) -> None:
        with self._lock:
            tx.confirmed = tx.solid = True

    def fail(self, status: int, body: bytes = b"", *, times: int = 1, path: str = "", headers: dict | None = None):
        for _ in range(times):
            self.faults.append(Fault(status, body, path, headers or {}))

    def count(self, path_part: str) -> int:
        return sum(1 for r in self.requests if path_part in r[1])

    # -- the HTTP app -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/v1/accounts/{address}/transactions/trc20", self._trc20)
        app.router.add_get("/v1/contracts/{contract}/events", self._events)
        app.router.add_post("/walletsolidity/gettransactioninfobyid", self._info)
        app.router.add_get("/walletsolidity/gettransactioninfobyid", self._info)
        return app

    @web.middleware
    async def _faults(self, request: web.Request, handler):
        self.requests.append((request.method, request.path, dict(request.query), dict(request.headers)))
        with self._lock:
            fault = next((f for f in self.faults if f.path in request.path), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers,
                                content_type="application/json")
        return await handler(request)

    async def _trc20(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        q = request.query
        limit = min(int(q.get("limit", "20")), 200)
        min_ts = int(q.get("min_timestamp", "0"))
        contract = q.get("contract_address")
        only_confirmed = q.get("only_confirmed") == "true"
        only_to = q.get("only_to") == "true"
        with self._lock:
            rows = [t for t in self.txs if t.listed and t.block_timestamp >= min_ts]
        if not self.ignore_only_to:
            rows = [t for t in rows if t.to == address or (not only_to and t.sender == address)]
        if contract and not self.ignore_contract_filter:
            rows = [t for t in rows if t.contract == contract]
        if only_confirmed:
            rows = [t for t in rows if t.confirmed]
        descending = q.get("order_by", "block_timestamp,desc").endswith("desc")
        rows.sort(key=lambda t: t.block_timestamp, reverse=descending)
        offset = int(base64.urlsafe_b64decode(q["fingerprint"]).decode()) if "fingerprint" in q else 0
        start = max(0, offset - 1) if (self.repeat_across_pages and offset) else offset
        page = rows[start:start + limit]
        end = start + len(page)
        meta: dict = {"at": int(time.time() * 1000), "page_size": len(page)}
        if end < len(rows):
            fingerprint = base64.urlsafe_b64encode(str(end).encode()).decode()
            meta["fingerprint"] = fingerprint
            nxt = dict(q)
            nxt["fingerprint"] = fingerprint
            query = "&".join(f"{k}={v}" for k, v in nxt.items())
            meta["links"] = {"next": f"{self.url}{request.path}?{query}"}
        return web.json_response({"data": [t.listing() for t in page], "success": True, "meta": meta})

    async def _events(self, request: web.Request) -> web.Response:
        contract = request.match_info["contract"]
        q = request.query
        limit = min(int(q.get("limit", "20")), 200)
        min_ts = int(q.get("min_block_timestamp", "0"))
        with self._lock:
            rows = [t for t in self.txs if t.listed and t.contract == contract and t.block_timestamp >= min_ts
                    and q.get("event_name", "Transfer") == "Transfer"]
        if q.get("only_confirmed") == "true":
            rows = [t for t in rows if t.confirmed]
        descending = q.get("order_by", "block_timestamp,desc").endswith("desc")
        rows.sort(key=lambda t: (t.block_timestamp, t.block_number), reverse=descending)
        return self._paged(request, [t.event() for t in rows], limit)

    def _paged(self, request: web.Request, rows: list, limit: int) -> web.Response:
        q = request.query
        start = int(base64.urlsafe_b64decode(q["fingerprint"]).decode()) if "fingerprint" in q else 0
        page = rows[start:start + limit]
        end = start + len(page)
        meta: dict = {"at": int(time.time() * 1000), "page_size": len(page)}
        if end < len(rows):
            fingerprint = base64.urlsafe_b64encode(str(end).encode()).decode()
            meta["fingerprint"] = fingerprint
            nxt = dict(q)
            nxt["fingerprint"] = fingerprint
            meta["links"] = {"next": f"{self.url}{request.path}?" + "&".join(f"{k}={v}" for k, v in nxt.items())}
        return web.json_response({"data": page, "success": True, "meta": meta})

    async def _info(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            tx_id = (await request.json()).get("value", "")
        else:
            tx_id = request.query.get("value", "")
        with self._lock:
            tx = next((t for t in self.txs if t.tx_id == tx_id), None)
        if tx is None or not tx.solid:
            return web.json_response({})
        return web.json_response(tx.info())
