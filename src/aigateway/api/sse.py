"""Reading an upstream's SSE stream: find its usage, strip what the client did not ask for.

The gateway always asks the upstream for usage (`stream_options.include_usage`).
Most chunks are forwarded byte for byte: a complete block of lines is parsed
only when it carries a non-null `usage`, which is usually once per stream.
"""

from __future__ import annotations

import orjson

from aigateway.api.tokens import count_text_tokens

_USAGE = b'"usage"'
_NULL_USAGE = (b'"usage":null', b'"usage": null')


class SSEFilter:
    def __init__(self, *, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: dict | None = None
        self.done = False  # saw `data: [DONE]`
        self._tail = b""
        self._seen: list[bytes] = []  # forwarded data, kept to count tokens if no usage comes

    def feed(self, data: bytes) -> bytes:
        """Take raw bytes from upstream; return the complete lines to forward."""
        data = self._tail + data
        cut = data.rfind(b"\n") + 1
        complete, self._tail = data[:cut], data[cut:]
        if not complete:
            return b""
        if b"[DONE]" in complete:
            self.done = True
        if complete.count(_USAGE) > sum(complete.count(n) for n in _NULL_USAGE):
            complete = self._take_usage(complete)
        self._seen.append(complete)
        return complete

    def flush(self) -> bytes:
        rest, self._tail = self._tail, b""
        return rest

    def _take_usage(self, block: bytes) -> bytes:
        out: list[bytes] = []
        skip_blank = False
        for line in block.splitlines(keepends=True):
            if skip_blank and line.strip() == b"":
                skip_blank = False
                continue
            skip_blank = False
            if line.startswith(b"data:") and _USAGE in line:
                try:
                    chunk = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    chunk = None
                if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                    self.usage = chunk["usage"]
                    if self.strip_usage:
                        if not chunk.get("choices"):
                            skip_blank = True  # drop the usage-only event and its blank line
                            continue
                        chunk["usage"] = None
                        line = b"data: " + orjson.dumps(chunk) + b"\n"
            out.append(line)
        return b"".join(out)

    def generated_tokens(self) -> int:
        """Count the tokens of what was streamed (content, tool-call arguments), for estimates."""
        pieces: list[str] = []
        for line in b"".join(self._seen).splitlines():
            if not line.startswith(b"data:") or b"[DONE]" in line:
                continue
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or [] if isinstance(chunk, dict) else []:
                delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                pieces.append(delta.get("content") or "")
                for call in delta.get("tool_calls") or []:
                    function = call.get("function") or {} if isinstance(call, dict) else {}
                    pieces.append(function.get("name") or "")
                    pieces.append(function.get("arguments") or "")
        return count_text_tokens("".join(pieces))
