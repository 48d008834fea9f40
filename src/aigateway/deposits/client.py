"""A small client for a TronGrid-compatible HTTP API.

Three calls are used:
- `GET /v1/contracts/{contract}/events`: the USDT contract's confirmed Transfer events in
  block-timestamp order, paged by `meta.fingerprint` (discovery for every address at once);
- `GET /v1/accounts/{address}/transactions/trc20`: one address's transfers, paged by
  `meta.fingerprint` (the Deposit tab, `rescan`, and the slow fallback);
- `POST /walletsolidity/gettransactioninfobyid`: the receipt and logs of a transaction as
  seen by the solidity node, i.e. only once its block is irreversible (`{}` before that).

Anything that is not a clean answer (429, 403, 5xx, a timeout, a body that is not the
expected JSON) raises `ApiUnavailable`, carrying how long to wait when the server said so.
The caller backs off and retries later; nothing is treated as "no transactions".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from aigateway.deposits.tron import AddressError, address_from_hex, is_valid_address

log = logging.getLogger(__name__)


class ApiUnavailable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SeenTransfer:
    """One row of the discovery listing (informational: crediting re-reads the chain)."""

    tx_id: str
    to: str
    value: str
    contract: str
    block_timestamp: int


@dataclass(frozen=True, slots=True)
class Page:
    transfers: list[SeenTransfer]
    fingerprint: str | None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class TronGridClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 15.0,
                 requests_per_second: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["TRON-PRO-API-KEY"] = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._spacing = 1.0 / requests_per_second
        self._next_slot = 0.0
        self._pace = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _paced(self) -> None:
        async with self._pace:
            now = time.monotonic()
            if self._next_slot > now:
                await asyncio.sleep(self._next_slot - now)
            self._next_slot = max(now, self._next_slot) + self._spacing

    async def _request(self, method: str, path: str, *, params: dict | None = None, json: dict | None = None):
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        await self._paced()
        self.requests += 1
        url = self.base_url + path
        try:
            async with self._session.request(method, url, params=params, json=json) as resp:
                body = await resp.read()
                if resp.status in (403, 429) or resp.status >= 500:
                    raise ApiUnavailable(f"{method} {path} answered HTTP {resp.status}", _retry_after(resp))
                if resp.status != 200:
                    raise ApiUnavailable(f"{method} {path} answered HTTP {resp.status}: {body[:200]!r}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ApiUnavailable(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiUnavailable(f"{method} {path} returned a body that is not JSON: {body[:120]!r}") from exc

    async def trc20_page(self, address: str, *, contract: str, min_timestamp: int, limit: int,
                         only_confirmed: bool = False, fingerprint: str | None = None) -> Page:
        """One page of incoming TRC-20 transfers of `contract` to `address`, oldest first."""
        params = {
            "only_to": "true",
            "contract_address": contract,
            "min_timestamp": str(min_timestamp),
            "limit": str(limit),
            "order_by": "block_timestamp,asc",
        }
        if only_confirmed:
            params["only_confirmed"] = "true"
        if fingerprint:
            params["fingerprint"] = fingerprint
        body = await self._request("GET", f"/v1/accounts/{address}/transactions/trc20", params=params)

        def skipped(item: object) -> None:
            log.warning("deposits: skipping a malformed trc20 listing entry for %s: %.200s", address, item)

        return _page(body, f"trc20 listing for {address}", _seen_transfer, skipped)

    async def contract_events_page(self, contract: str, *, min_block_timestamp: int, limit: int,
                                   fingerprint: str | None = None) -> Page:
        """One page of the contract's confirmed Transfer events, oldest first. With a fingerprint all
        other parameters must stay the same (TronGrid's paging rule)."""
        params = {
            "event_name": "Transfer",
            "only_confirmed": "true",
            "min_block_timestamp": str(min_block_timestamp),
            "order_by": "block_timestamp,asc",
            "limit": str(limit),
        }
        if fingerprint:
            params["fingerprint"] = fingerprint
        body = await self._request("GET", f"/v1/contracts/{contract}/events", params=params)

        def skipped(item: object) -> None:
            log.debug("deposits: skipping an event that is not a well-formed Transfer: %.200s", item)

        return _page(body, f"events of {contract}", lambda item: _seen_event(item, contract), skipped)

    async def solid_transaction_info(self, tx_id: str) -> dict | None:
        """The solidified TransactionInfo, or None while the transaction is not solidified."""
        body = await self._request("POST", "/walletsolidity/gettransactioninfobyid", json={"value": tx_id})
        if not isinstance(body, dict):
            raise ApiUnavailable(f"transaction info for {tx_id} is not an object: {str(body)[:200]}")
        if not body:
            return None
        if body.get("id") != tx_id:
            raise ApiUnavailable(f"transaction info for {tx_id} names another transaction: {str(body)[:200]}")
        return body


def _seen_transfer(item) -> SeenTransfer | None:
    if not isinstance(item, dict):
        return None
    tx_id, to, value = item.get("transaction_id"), item.get("to"), item.get("value")
    token = item.get("token_info")
    ts = item.get("block_timestamp")
    if not (isinstance(tx_id, str) and len(tx_id) == 64 and isinstance(to, str) and isinstance(token, dict)):
        return None
    try:
        bytes.fromhex(tx_id)
    except ValueError:
        return None
    contract = token.get("address")
    if not isinstance(contract, str) or not isinstance(value, (str, int)) or isinstance(ts, bool) \
            or not isinstance(ts, int):
        return None
    return SeenTransfer(tx_id.lower(), to, str(value), contract, ts)


def _seen_event(item, contract: str) -> SeenTransfer | None:
    """A Transfer event as TronGrid lists it: `result.to` is 0x-hex, 41-hex or base58."""
    if not isinstance(item, dict) or item.get("event_name") != "Transfer":
        return None
    tx_id, ts, result = item.get("transaction_id"), item.get("block_timestamp"), item.get("result")
    if not (isinstance(tx_id, str) and len(tx_id) == 64 and isinstance(result, dict)) \
            or isinstance(ts, bool) or not isinstance(ts, int):
        return None
    to, value = result.get("to"), result.get("value")
    if not isinstance(to, str) or not isinstance(value, (str, int)):
        return None
    try:
        bytes.fromhex(tx_id)
        to = to if is_valid_address(to) else address_from_hex(to)
    except (ValueError, AddressError):
        return None
    return SeenTransfer(tx_id.lower(), to, str(value), contract, ts)


def _page(body: object, what: str, parse: Callable[[Any], SeenTransfer | None],
          skipped: Callable[[Any], None]) -> Page:
    """A listing answer (`{"success": true, "data": [...], "meta": {"fingerprint": ...}}`) as a Page.

    A body of another shape raises ApiUnavailable (nothing is taken as "no transfers"); an
    entry that `parse` cannot read is skipped (and told to `skipped`), the rest still count."""
    if not isinstance(body, dict) or body.get("success") is not True or not isinstance(body.get("data"), list):
        raise ApiUnavailable(f"unexpected shape of the {what}: {str(body)[:200]}")
    transfers = []
    for item in body["data"]:
        seen = parse(item)
        if seen is None:
            skipped(item)
            continue
        transfers.append(seen)
    meta = body.get("meta")
    fp = meta.get("fingerprint") if isinstance(meta, dict) else None
    return Page(transfers, fp if isinstance(fp, str) and fp else None)
