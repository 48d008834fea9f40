import openai
import pytest


def test_chat_roundtrip_charges_exact_cost(gateway):
    cid, key = gateway.customer("smoke@example.com", credit="10")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url)
    reply = client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hello!"}])
    assert reply.choices[0].message.content.startswith("Hello!")
    u = reply.usage
    expected = -(-(u.prompt_tokens * 350_000 + u.completion_tokens * 1_400_000) // 1_000_000)
    assert gateway.balance(cid) == 10_000_000 - expected
    assert gateway.ledger_sum(cid) == gateway.balance(cid)
