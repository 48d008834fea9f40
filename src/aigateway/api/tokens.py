"""Token arithmetic: the hold's upper bound, and our own count when an upstream gives none.

The hold must never be smaller than what the request can cost, or two
concurrent requests could overdraw. BPE tokenizers emit at most one token per
byte of text, and each message's JSON framing in the request body
(`{"role":"user","content":""}`) is longer than the few tokens of chat
framing it becomes, so the request body's length in bytes bounds the prompt
tokens, without tokenizing on the hot path. Images are not text: each
`image_url` part adds a fixed allowance. The model's context length, when
known, caps the bound.

The o200k tables are loaded only when a count is first needed (an upstream that
sent no usage), in a thread, never on the event loop: loading takes 0.3-2 s and
~125 MB (bpe-openai's 74 MB extension and its tables), which a worker whose
upstreams always report usage never pays. Async callers `await ensure_loaded()`
before counting, so other requests keep being served meanwhile; every waiter
(on any event loop) shares the one load. Hazard: the last step (bpe-openai's Rust
table build, ~0.1-0.25 s) holds the GIL, so other requests may wait that long
once; before, they waited for the whole load. Counting never fails on text that looks
like a special token (`<|endoftext|>` in a prompt is ordinary text here).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bpe_openai.tokenizer import Encoding

IMAGE_TOKEN_ALLOWANCE = 1_700  # a high-detail image is at most ~1,500 tokens at OpenAI


def prompt_token_bound(body: bytes, context_length: int | None) -> int:
    bound = len(body) + IMAGE_TOKEN_ALLOWANCE * body.count(b'"image_url"')
    if context_length:
        bound = min(bound, context_length)
    return bound


_load_lock = threading.Lock()
_loaded: Future[Any] | None = None  # a concurrent Future[Any]: event loops in other threads can await it too


def _load(into: Future[Any]) -> None:
    global _loaded
    try:
        # bpe-openai ships the o200k/cl100k tables inside the wheel: no download at run time.
        import bpe_openai

        encoding = bpe_openai.get_encoding("o200k_base")
        encoding.encode_ordinary("warm up")
    except BaseException as exc:  # the waiters get the error; the next count tries again
        with _load_lock:
            _loaded = None
        into.set_exception(exc)
    else:
        into.set_result(encoding)


def _start_loading() -> Future[Any]:
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = Future()
            threading.Thread(target=_load, args=(_loaded,), name="tokenizer-load", daemon=True).start()
        return _loaded


async def ensure_loaded() -> None:
    """Load the tokenizer in a thread (once per process); other requests run meanwhile."""
    future = _start_loading()
    if not future.done():
        await asyncio.wrap_future(future)


def _encoding() -> Encoding:
    # Callers on an event loop await ensure_loaded() first; anything else waits here.
    return _start_loading().result()


def count_images(messages: object) -> int:
    """Input images of a chat request: `image_url` parts of message contents (never more than the
    hold's bound, which counts every `"image_url"` in the raw body)."""
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
               for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url")


def count_text_tokens(text: str) -> int:
    return len(_encoding().encode_ordinary(text)) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: count the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_chat_prompt(messages: list[Any]) -> int:
    """Estimate prompt tokens the way OpenAI's cookbook does: 3 per message + 3 for the reply."""
    total = 3
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += 3 + count_text_tokens(_content_text(message.get("content")))
        total += count_text_tokens(str(message.get("name", "") or ""))
        if message.get("tool_calls"):
            total += count_text_tokens(str(message["tool_calls"]))
    return total


def count_embedding_input(value: Any) -> int:
    if isinstance(value, str):
        return count_text_tokens(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return sum(count_embedding_input(v) for v in value)
    return 0
