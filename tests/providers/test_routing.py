"""Route order: priority, weights, cooldown of routes that keep failing."""

import random
from collections import Counter

from aigateway.api.tokens import prompt_token_bound
from aigateway.providers.router import Router
from aigateway.providers.routes import Provider, Route

P = Provider(name="p", base_url="http://127.0.0.1:1")


def test_priority_first_then_weighted_split():
    primary_a, primary_b = Route(P, "a", 1, 3), Route(P, "b", 1, 1)
    backup = Route(P, "c", 2, 100)
    router = Router(rng=random.Random(1))
    firsts = Counter(router.order([backup, primary_a, primary_b])[0].upstream_model for _ in range(4000))
    assert firsts["c"] == 0
    assert 0.70 < firsts["a"] / 4000 < 0.80  # weight 3 of 4
    assert all(router.order([backup, primary_a, primary_b])[-1] is backup for _ in range(50))


def test_failing_route_rests_at_the_back_and_recovers():
    a, b = Route(P, "a", 1), Route(P, "b", 2)
    router = Router(failures_to_cool=2, cooldown=60)
    router.failed(a)
    assert router.order([a, b])[0] is a  # one failure is not enough
    router.failed(a)
    assert router.order([a, b]) == [b, a]  # resting, but still tried last
    router.succeeded(a)
    assert router.order([a, b]) == [a, b]


def test_hold_bound_covers_text_and_images_and_respects_context():
    body = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'
    assert prompt_token_bound(body, None) == len(body)
    assert prompt_token_bound(body, 10) == 10
    with_image = b'{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}'
    assert prompt_token_bound(with_image, None) >= len(with_image) + 1_700
