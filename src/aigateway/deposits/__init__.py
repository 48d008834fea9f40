"""USDT (TRC-20) deposits: one permanent address per customer, a watcher, exact-once credit.

- `config`   the `[deposits]` section, validated (xpub, network, rate, intervals)
- `tron`     addresses (base58check, 0x41), derivation from the account xpub, Transfer logs
- `rates`    USDT -> TMT conversion with integers and Decimal only
- `tables`   addresses, seen transactions, deposits, the watcher lease
- `client`   a small TronGrid-compatible HTTP client that reports when to back off
- `watcher`  discovery, verification against the solidified chain, crediting
- `service`  what the portal and the CLI use (`appkeys.DepositsPort`)
- `web`, `commands`  plug-in points for the app and the CLI
"""
