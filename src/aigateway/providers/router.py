"""The order in which a model's routes are tried, and which routes rest.

Routes are tried by priority (lower first); among equal priorities the order
is a weighted random draw, so traffic splits by weight. A route that fails
`failures_to_cool` times in a row rests for `cooldown` seconds: it is moved
to the back of the order (still tried when everything else failed, so a
client gets 503 only after every route was tried).
"""

from __future__ import annotations

import random
import time
from itertools import groupby

from aigateway.providers.routes import Route


class Router:
    def __init__(self, *, failures_to_cool: int = 3, cooldown: float = 30.0, rng: random.Random | None = None) -> None:
        self._failures: dict[str, int] = {}
        self._cool_until: dict[str, float] = {}
        self.failures_to_cool = failures_to_cool
        self.cooldown = cooldown
        self._rng = rng or random.Random()

    def order(self, routes: list[Route]) -> list[Route]:
        if len(routes) == 1:
            return routes
        ordered: list[Route] = []
        for _, group in groupby(sorted(routes, key=lambda r: r.priority), key=lambda r: r.priority):
            ordered.extend(self._weighted_shuffle(list(group)))
        now = time.monotonic()
        resting = [r for r in ordered if self._cool_until.get(r.key, 0) > now]
        if not resting:
            return ordered
        return [r for r in ordered if r not in resting] + resting

    def _weighted_shuffle(self, group: list[Route]) -> list[Route]:
        if len(group) == 1:
            return group
        # Efraimidis-Spirakis: sort by u^(1/w), a weighted draw without replacement.
        return sorted(group, key=lambda r: self._rng.random() ** (1.0 / max(r.weight, 1)), reverse=True)

    def succeeded(self, route: Route) -> None:
        if self._failures.get(route.key):
            self._failures[route.key] = 0
            self._cool_until.pop(route.key, None)

    def failed(self, route: Route) -> None:
        count = self._failures.get(route.key, 0) + 1
        self._failures[route.key] = count
        if count >= self.failures_to_cool:
            self._cool_until[route.key] = time.monotonic() + self.cooldown
