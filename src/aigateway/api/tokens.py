"""Token arithmetic: the hold's upper bound, and our own count when an upstream gives none.

The hold must never be smaller than what the request can cost, or two
concurrent requests could overdraw. BPE tokenizers emit at most one token per
byte of text, and each message's JSON framing in the request body
(`{"role":"user","content":""}`) is longer than the few tokens of chat
framing it becomes, so the request body's length in bytes bounds the prompt
tokens, without tokenizing on the hot path. Images are not text: each
`image_url` part adds a fixed allowance. The model's context length, when
known, caps the bound.
"""

from __future__ import annotations

import functools

IMAGE_TOKEN_ALLOWANCE = 1_700  # a high-detail image is at most ~1,500 tokens at OpenAI


def prompt_token_bound(body: bytes, context_length: int | None) -> int:
    bound = len(body) + IMAGE_TOKEN_ALLOWANCE * body.count(b'"image_url"')
    if context_length:
        bound = min(bound, context_length)
    return bound


@functools.cache
def _encoding():
    # bpe-openai ships the o200k/cl100k tables inside the wheel: no download at run time.
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_images(messages) -> int:
    """Input images of a chat request: `image_url` parts of message contents (never more than the
    hold's bound, which counts every `"image_url"` in the raw body)."""
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
               for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url")


def count_text_tokens(text: str) -> int:
    return len(_encoding().encode(text)) if text else 0


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: count the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_chat_prompt(messages: list) -> int:
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


def count_embedding_input(value) -> int:
    if isinstance(value, str):
        return count_text_tokens(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return sum(count_embedding_input(v) for v in value)
    return 0
