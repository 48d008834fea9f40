"""Answers carry the model name the customer asked for; the upstream's id stays in the usage record."""

import openai
import pytest

from aigateway.api.model_name import AnswerRename
from aigateway.api.sse import SSEFilter
from tests.conftest import gateway_config


def client(gw, key):
    return openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)


def test_unary_and_streamed_answers_name_the_asked_model(gateway):
    cid, key = gateway.customer("rename@example.com")
    sdk = client(gateway, key)
    reply = sdk.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])
    assert reply.model == "llama-3.1-70b"
    chunks = list(sdk.chat.completions.create(model="llama-3.1-70b", stream=True,
                                              stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "Hi"}]))
    assert len(chunks) > 3 and {c.model for c in chunks} == {"llama-3.1-70b"}
    vectors = sdk.embeddings.create(model="nomic-embed-text", input="x")
    assert vectors.model == "nomic-embed-text"
    records = gateway.usage(cid)
    assert {r.upstream_model for r in records} == {"mock-chat", "mock-embed"}


def test_rewrite_can_be_turned_off_per_model(start_gateway, mock_upstream, sqlite_url):
    config = gateway_config(mock_upstream.url, sqlite_url)
    config.models[0].rewrite_model = False
    gw = start_gateway(config)
    _, key = gw.customer("norename@example.com")
    reply = client(gw, key).chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])
    assert reply.model == "mock-chat"


@pytest.mark.parametrize("spelling", [b'"model":"up/x-1"', b'"model" : "up/x-1"'])
def test_byte_rename_learns_the_upstream_spelling(spelling):
    rename = AnswerRename('my "model"')
    block = b'{"id":"a",' + spelling + b',"choices":[{"delta":{"content":"\\"model\\":\\"up/x-1\\""}}]}'
    out = rename.apply(block)
    assert out == b'{"id":"a","model":"my \\"model\\"","choices":[{"delta":{"content":"\\"model\\":\\"up/x-1\\""}}]}'
    assert rename.apply(b'{"model":"other"}') == b'{"model":"my \\"model\\""}'  # spelling changed: regex path


def test_stream_filter_renames_every_chunk_split_anywhere():
    events = [b'data: {"id":"c","model":"up","choices":[{"delta":{"content":"w%d"}}],"usage":null}\n\n' % i
              for i in range(20)]
    events.append(b'data: {"id":"c","model":"up","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":20}}\n\n')
    raw = b"".join(events) + b"data: [DONE]\n\n"
    for size in (1, 7, 64, len(raw)):
        sse = SSEFilter(strip_usage=False, rename=AnswerRename("asked", "req_1"))
        out = b"".join(sse.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + sse.end()
        assert out == raw.replace(b'"model":"up"', b'"model":"asked"').replace(b'"id":"c"', b'"id":"req_1"')
        assert sse.done and sse.usage["completion_tokens"] == 20
