"""Reading an upstream's SSE stream as events: find its end and its usage, strip what the client did not ask for.

Invariant: the stream ends only at an event whose data is exactly `[DONE]`, decided on
the parsed event, never on a substring of the bytes (a model's text may contain
"data: [DONE]"; inside a JSON string it is just text). Events are parsed line by line
per the SSE format: lines end in LF, CRLF or CR, an event ends at a blank line, its
`data:` fields are joined with LF, and `:` lines are comments.

Complete events are forwarded byte for byte, except a usage the client did not ask
for (the gateway always asks the upstream for usage) and the `model` member, renamed
to the customer's model name by byte replacement (`api.model_name`). Hot path: an event's JSON is
parsed only when its bytes could carry a non-null `usage` (a cheap substring count);
the decision is then made on the parsed event.

Anything that is not SSE (a line that is no SSE field, data that is neither JSON
nor `[DONE]`, an event larger than `MAX_EVENT_BYTES`) raises `NotSSE`.

Memory: what was streamed is kept to count tokens if no usage comes, and raw that is ~200
bytes of JSON per token (megabytes for a long reasoning answer, per stream). Past
`KEEP_RAW_BYTES` the kept events are compressed: raw deflate, level 1, with a 4 KiB window and a
small state (`_pack`). zlib's defaults allocate and clear ~270 KB of state per call, ~50 µs
whatever the input; this costs ~7 µs for 4 KiB (~0.3 µs an event) and is ~20x smaller for such
chunks. Reducing them to their text instead cost ~3.6 µs an event.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from aigateway.api.model_name import AnswerRename
from aigateway.api.tokens import count_text_tokens

_USAGE = b'"usage"'
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_DONE = b"[DONE]"
_FIELDS = frozenset((b"data", b"event", b"id", b"retry"))
# An event ends at a blank line: two line ends in a row, whichever of LF, CRLF, CR each one is.
# The second may be a CR whose LF has not arrived yet: either way the blank line is complete
# (a late LF is then an empty line, which dispatches nothing). The first may not: its CR
# must be followed by something other than LF before it counts as a line end.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")
MAX_EVENT_BYTES = 2**22  # one chat chunk is small; an endless "event" is not SSE
KEEP_RAW_BYTES = 2**12  # forwarded events kept as they came before they are compressed
_PACK_WBITS = -12  # raw deflate (no header), a 4 KiB window: the blocks are about that long
_PACK_MEMLEVEL = 2  # a small hash table: cheap to set up for each block


def _pack(data: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, _PACK_WBITS, _PACK_MEMLEVEL)
    return packer.compress(data) + packer.flush()


def _unpack(data: bytes) -> bytes:
    return zlib.decompress(data, _PACK_WBITS)


class NotSSE(Exception):
    """The upstream's body is not a chat completion SSE stream."""


def parse_event(raw: bytes) -> tuple[bytes | None, bool]:
    """(data, ok): the event's `data` fields joined with LF (None if it has none), and ok=False
    when a line is neither a comment nor one of the SSE fields (data, event, id, retry)."""
    data: list[bytes] = []
    ok = True
    for line in _LINE_END.split(raw):
        if not line or line[0] == 0x3A:  # blank, or a `:` comment
            continue
        name, colon, value = line.partition(b":")
        if name not in _FIELDS:
            ok = False
            continue
        if name == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    return (b"\n".join(data) if data else None), ok


def _plain_chunks(block: bytes) -> bool:
    """LF-only complete events, each a single `data: {` line, no `[DONE]`, no non-null usage.

    The hot path: such a block is forwarded as it is, checked with a few C-level scans. The block
    ends in a blank line; if every LF is in that end or in a `\n\ndata: {` (an event's end and the
    next one's start), every event is one `data: {` line. A usage that is not `"usage":null`
    (also the spaced form, which is valid) goes to the per-event parse.
    """
    if not block.startswith(b"data: {") or _DONE in block:
        return False
    if block.count(b"\n") != 2 * block.count(b"\n\ndata: {") + 2:
        return False
    usage = block.count(_USAGE)
    return not usage or usage == block.count(_NULL_USAGE[0])


class SSEFilter:
    def __init__(self, *, strip_usage: bool, rename: AnswerRename | None = None,
                 price_usage: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.strip_usage = strip_usage
        self.price_usage = price_usage  # adds `cost` to the usage the client gets (api.receipts)
        self.rename = rename  # forwarded blocks name the model the client asked for
        self.usage: dict[str, Any] | None = None
        self.done = False  # saw the event `data: [DONE]`
        self._done_cr = False  # [DONE] ended in a CR at the end of a read
        self._tail = b""
        # What was forwarded, kept to count tokens if no usage comes: the latest events as they
        # came (`_seen`, at most about KEEP_RAW_BYTES), the earlier ones compressed (`_packed`).
        self._seen: list[bytes] = []
        self._seen_bytes = 0
        self._packed: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        """Take raw bytes from upstream; return the complete events to forward (nothing after `[DONE]`)."""
        if self.done:
            # The LF of a CRLF that ended `[DONE]`, split off into this read, still belongs to it.
            late_lf, self._done_cr = self._done_cr and data[:1] == b"\n", False
            return b"\n" if late_lf else b""
        buffer = self._tail + data if self._tail else data
        if b"\r" not in buffer:
            cut = buffer.rfind(b"\n\n") + 2
            if cut == 1:
                return self._keep(buffer)
            complete = buffer[:cut]
            if _plain_chunks(complete):
                self._tail = buffer[cut:]
                self._remember(complete)
                return self.rename.apply(complete) if self.rename else complete
        out: list[bytes] = []
        start = 0
        for end in _EVENT_END.finditer(buffer):
            event = buffer[start:end.end()]
            start = end.end()
            kept = self._event(event)
            if kept:
                out.append(kept)
            if self.done:
                if buffer[start:start + 1] == b"\n" and event.endswith(b"\r"):
                    out.append(b"\n")
                else:
                    self._done_cr = event.endswith(b"\r") and start == len(buffer)
                start = len(buffer)  # whatever follows [DONE] is not forwarded
                break
        self._keep(buffer[start:])
        block = b"".join(out)
        if block:
            self._remember(block)
            if self.rename:
                block = self.rename.apply(block)
        return block

    def _keep(self, tail: bytes) -> bytes:
        if len(tail) > MAX_EVENT_BYTES:
            raise NotSSE(f"no event end within {MAX_EVENT_BYTES} bytes")
        self._tail = tail
        return b""

    def _event(self, event: bytes) -> bytes:
        has_done = _DONE in event
        has_usage = event.count(_USAGE) > sum(event.count(n) for n in _NULL_USAGE)
        if not has_done and not has_usage:
            # The common chunk: only check cheaply that it looks like SSE data.
            head = event.lstrip(b"\r\n")
            if head.startswith(b"data: {") or head.startswith(b"data:{") or head.startswith(b":"):
                return event
        data, ok = parse_event(event)
        if not ok:
            raise NotSSE("a line that is not an SSE field")
        if data is None:
            return event  # comments, `event:`/`id:`/`retry:` only, or stray blank lines
        if data == _DONE:
            self.done = True
            return event
        if data.strip() and data.lstrip()[:1] != b"{":  # an empty `data:` is odd but harmless
            raise NotSSE("event data that is neither JSON nor [DONE]")
        if not has_usage:
            return event
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
            return event
        self.usage = chunk["usage"]
        if not self.strip_usage:
            if self.price_usage is None:
                return event
            chunk["usage"] = self.price_usage(self.usage)
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        if not chunk.get("choices"):
            return b""  # a usage-only event the client did not ask for
        chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def end(self) -> bytes:
        """The upstream closed: a last `data: [DONE]` without its blank line still ends the stream.

        Any other unterminated event is dropped, as the SSE format says.
        """
        rest, self._tail = self._tail, b""
        if self.done or not rest.strip():
            return b""
        data, ok = parse_event(rest)
        if ok and data == _DONE:
            self.done = True
            return b"data: [DONE]\n\n"
        return b""

    def _remember(self, block: bytes) -> None:
        self._seen.append(block)
        self._seen_bytes += len(block)
        if self._seen_bytes > KEEP_RAW_BYTES:
            self._packed.append(_pack(b"".join(self._seen)))
            self._seen.clear()
            self._seen_bytes = 0

    def kept_bytes(self) -> int:
        """What the filter holds to count tokens with (raw and compressed events)."""
        return self._seen_bytes + sum(map(len, self._packed))

    def generated_tokens(self) -> int:
        """Count the tokens of what was streamed (content, reasoning, tool calls), for estimates.

        Never raises: a malformed chunk contributes nothing (settlement must run whatever came).
        """
        # One compressed batch at a time: a long answer is never all raw in memory again.
        text = "".join([_streamed_text(_unpack(p)) for p in self._packed]) + _streamed_text(
            b"".join(self._seen))
        try:
            return count_text_tokens(text)
        except Exception:  # a tokenizer failure must not skip the charge: count by bytes / 4
            return len(text.encode()) // 4 + 1


def _streamed_text(events: bytes) -> str:
    """The text the model generated in these forwarded events; never raises (see `generated_tokens`)."""
    return "".join(text for chunk in chat_events(events) for text in _delta_texts(chunk))


def _delta_texts(chunk: object) -> list[str]:
    texts: list[str] = []
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        # What providers bill as output: the answer, its reasoning (`reasoning_content` in
        # DeepSeek's and vLLM's streams, `reasoning` in OpenRouter's and Ollama's), a refusal.
        for field in ("content", "reasoning_content", "reasoning", "refusal"):
            texts.append(_text(delta.get(field)))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts.append(_text(function.get("name")))
                texts.append(_text(function.get("arguments")))
    return texts


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def chat_events(block: bytes) -> list[dict[str, Any]]:
    """The JSON objects of the complete events in a block `SSEFilter.feed` returned, in order.

    For stream transformers (api/dialects): `[DONE]`, comments and data that is not a JSON
    object are skipped (the filter has already refused anything that is not SSE).
    """
    out: list[dict[str, Any]] = []
    for event in _EVENT_END.split(block):
        data, _ = parse_event(event)
        if data is None or data == _DONE:
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(chunk, dict):
            out.append(chunk)
    return out
