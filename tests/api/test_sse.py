"""The SSE filter parses events line by line (LF, CRLF, CR), ends only at the `[DONE]` event."""

import orjson
import pytest

from aigateway.api.sse import NotSSE, SSEFilter
from aigateway.api.tokens import count_text_tokens


def chunk(content: str | None = None, usage=None, *, choices=True, eol: bytes = b"\n") -> bytes:
    body: dict = {"object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"content": content}}] if choices else []}
    body["usage"] = usage
    return b"data: " + orjson.dumps(body) + eol + eol


USAGE = {"prompt_tokens": 7, "completion_tokens": 300, "total_tokens": 307}
TRICKY = 'He typed "data: [DONE]\\n\\n" and "usage": {"x": 1} then went on.'


def stream(eol: bytes) -> bytes:
    return (chunk("Hi", eol=eol) + b": keep-alive comment" + eol + eol + chunk(TRICKY, eol=eol)
            + chunk(None, USAGE, choices=False, eol=eol) + b"data: [DONE]" + eol + eol)


def feed_split(sse: SSEFilter, raw: bytes, size: int) -> bytes:
    return b"".join(sse.feed(raw[i:i + size]) for i in range(0, len(raw), size))


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_done_inside_text_is_text_whatever_the_line_ends_and_read_sizes(eol, size):
    raw = stream(eol)
    sse = SSEFilter(strip_usage=False)
    out = feed_split(sse, raw, size)
    assert sse.done and sse.usage == USAGE
    assert out == raw  # forwarded byte for byte


@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_usage_the_client_did_not_ask_for_is_stripped(size):
    with_usage_on_content = chunk("Hi", USAGE)
    raw = chunk("a") + with_usage_on_content + chunk(None, USAGE, choices=False) + b"data: [DONE]\n\n"
    sse = SSEFilter(strip_usage=True)
    out = feed_split(sse, raw, size)
    assert sse.done and sse.usage == USAGE
    assert out == chunk("a") + chunk("Hi") + b"data: [DONE]\n\n"


def test_multi_line_data_is_joined_with_lf_and_done_needs_the_exact_data():
    for almost in (b"data: [DONE] \n\n", b"data: [DONE] later\n\n", b"data: x\ndata: [DONE]\n\n"):
        sse = SSEFilter(strip_usage=False)
        with pytest.raises(NotSSE):
            sse.feed(almost)  # not exactly [DONE], and not JSON either
        assert not sse.done
    sse = SSEFilter(strip_usage=False)
    event = b'data: {"choices":\ndata: [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    assert sse.feed(event) == event and sse.usage == {"prompt_tokens": 1, "completion_tokens": 2}
    assert not sse.done
    assert sse.feed(b"data:[DONE]\n\ndata: {\"after\": 1}\n\n") == b"data:[DONE]\n\n" and sse.done


def test_nothing_is_forwarded_before_an_event_is_complete_and_a_last_done_without_blank_line_ends():
    sse = SSEFilter(strip_usage=False)
    assert sse.feed(chunk("x")[:-1]) == b""
    assert sse.feed(b"\n") == chunk("x")
    assert sse.feed(b"data: [DONE]\n") == b"" and not sse.done
    assert sse.end() == b"data: [DONE]\n\n" and sse.done


@pytest.mark.parametrize("body", [b"<html><body>Bad gateway</body></html>\n\n",
                                  b"data: <html>\n\n", b"hello world\r\n\r\n"])
def test_a_body_that_is_not_sse_raises(body):
    with pytest.raises(NotSSE):
        SSEFilter(strip_usage=False).feed(body)


@pytest.mark.parametrize("bad", [b'{"choices":[{"delta":"oops"}]}', b'{"choices":"x"}', b'{"choices":[1,null]}',
                                 b'{"choices":[{"delta":{"content":5,"tool_calls":[1,{"function":"f"}]}}]}',
                                 b'{"choices":[{"delta":null}]}', b'{not json'])
def test_generated_tokens_never_raises_on_malformed_chunks(bad):
    sse = SSEFilter(strip_usage=False)
    sse.feed(chunk("hello there") + b"data: " + bad + b"\n\n")
    assert sse.generated_tokens() == 2  # "hello there": the malformed chunk adds nothing


def test_the_fast_path_hands_multi_line_events_and_spaced_usage_to_the_parser():
    two_lines = b'data: {"choices": [],\ndata: "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    spaced_null = b'data: {"choices": [{"delta": {"content": "x"}}], "usage": null}\n\n'
    raw = chunk("a") + spaced_null + two_lines + chunk("b")
    sse = SSEFilter(strip_usage=False)
    assert sse.feed(raw) == raw and sse.usage == {"prompt_tokens": 1, "completion_tokens": 2}
    assert sse.generated_tokens() == count_text_tokens("axb") > 0
