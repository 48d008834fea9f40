"""The SSE filter parses events line by line (LF, CRLF, CR), ends only at the `[DONE]` event."""

import orjson
import pytest

from aigateway.api import sse as sse_module
from aigateway.api.sse import KEEP_RAW_BYTES, NotSSE, SSEFilter
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


def reasoning_chunk(field: str, text: str) -> bytes:
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk",
                                     "choices": [{"index": 0, "delta": {field: text}}]}) + b"\n\n"


def test_a_long_stream_is_not_kept_raw():
    # 20,000 events (~1.6 MB of JSON) without usage: what is kept to count tokens is about
    # KEEP_RAW_BYTES raw plus the rest compressed, and the count is that of the whole text.
    sse = SSEFilter(strip_usage=False)
    raw_bytes = 0
    for i in range(20_000):
        event = chunk(f"w{i % 10} ")
        raw_bytes += len(event)
        assert sse.feed(event) == event
    text = "".join(f"w{i % 10} " for i in range(20_000))
    assert raw_bytes > 1_500_000
    assert sse.kept_bytes() <= KEEP_RAW_BYTES + len(chunk("w0 ")) + raw_bytes // 20
    assert sse.generated_tokens() == count_text_tokens(text) > 0


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 97, 4096])
def test_compressing_kept_events_counts_the_same(monkeypatch, eol, size):
    # The same stream counted with compressed batches (a small budget) and without (a huge one).
    pieces = [chunk(f"piece {i} ", eol=eol) for i in range(400)]
    pieces[100] = b"data: {not json" + eol + eol
    pieces[200] = b": a comment" + eol + eol
    pieces[300] = b'data: {"choices":' + eol + b'data: [{"delta": {"content": "two lines"}}]}' + eol + eol
    raw = b"".join(pieces) + b"data: [DONE]" + eol + eol
    counts = []
    for budget in (256, 2**40):
        monkeypatch.setattr(sse_module, "KEEP_RAW_BYTES", budget)
        sse = SSEFilter(strip_usage=False)
        assert feed_split(sse, raw, size) == raw and sse.done
        counts.append(sse.generated_tokens())
    text = {100: "", 200: "", 300: "two lines"}
    assert counts[0] == counts[1] == count_text_tokens("".join(text.get(i, f"piece {i} ") for i in range(400)))


def test_reasoning_and_refusals_are_counted_as_output():
    sse = SSEFilter(strip_usage=False)
    sse.feed(reasoning_chunk("reasoning_content", "First, think. ") + reasoning_chunk("reasoning", "Then more. ")
             + reasoning_chunk("refusal", "No. ") + chunk("Answer."))
    assert sse.generated_tokens() == count_text_tokens("First, think. Then more. No. Answer.")
