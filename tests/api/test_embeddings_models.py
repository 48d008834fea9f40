"""Embeddings (billed by input tokens only) and the model list with prices."""

import openai

from aigateway.money import request_cost


def test_embeddings_single_and_batch_billed_by_input_only(gateway):
    cid, key = gateway.customer("embed@example.com", credit="1")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    one = client.embeddings.create(model="nomic-embed-text", input="Text to embed")
    batch = client.embeddings.create(model="nomic-embed-text", input=["First text", "Second text", "Third text"])
    assert len(one.data[0].embedding) > 0 and [d.index for d in batch.data] == [0, 1, 2]
    records = gateway.usage(cid)
    assert [r.output_tokens for r in records] == [0, 0] and all(r.endpoint == "embeddings" for r in records)
    expected = sum(request_cost(u.prompt_tokens, 0, 20_000, 0) for u in (one.usage, batch.usage))
    assert gateway.balance(cid) == 1_000_000 - expected


def test_embeddings_without_usage_are_estimated(gateway):
    cid, key = gateway.customer("embed2@example.com", credit="1")
    openai.OpenAI(api_key=key, base_url=gateway.base_url).embeddings.create(
        model="mock-embed-nousage", input=["hello world", "second"])
    [record] = gateway.usage(cid)
    assert record.estimated and record.input_tokens > 0


def test_models_list_has_prices_types_and_hides_unpriced(gateway):
    _, key = gateway.customer("models@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url)
    models = {m.id: m for m in client.models.list()}
    assert "unpriced-model" not in models
    llama = models["llama-3.1-70b"]
    assert llama.object == "model"
    assert llama.type == "chat"
    assert llama.pricing == {"currency": "TMT", "unit": "1M tokens", "input": "0.350000", "output": "1.400000",
                             "free": False, "cached_input": None, "cache_write": None, "cache_write_long": None,
                             "reasoning": None, "request": None, "image": None, "tiers": []}
    assert llama.prices_updated_at
    embed = models["nomic-embed-text"]
    assert embed.type == "embedding" and embed.pricing["input"] == "0.020000" and embed.pricing["output"] is None
    assert client.models.retrieve("llama-3.1-70b").id == "llama-3.1-70b"
