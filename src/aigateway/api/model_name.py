"""Answers name the model the customer asked for, not the upstream's id for it.

The `model` field of a unary answer and of every stream chunk is rewritten to the
catalog name the request used (per model: `rewrite_model`, default on); the upstream's
id stays in the usage record. Hot path: no chunk is parsed and re-serialised. The exact
bytes of the first `"model":"<upstream id>"` field are learned from the answer (whatever
spacing the upstream's serializer uses) and replaced with `bytes.replace`; only a block
with a `"model"` field spelled otherwise goes through a regex substitution.

Why a byte match is safe: inside a JSON string every `"` is escaped, so `"model"` followed
by `:` and a string can only be an object member, never text the model generated. Hazard: a
nested object's own `"model"` member (none in OpenAI's chat or embedding shapes) is renamed too.
"""

from __future__ import annotations

import re

import orjson

_MODEL_KEY = b'"model"'
# An object member `"model": "<JSON string>"`, any spacing around the colon.
_MODEL_FIELD = re.compile(rb'"model"[ \t\r\n]*:[ \t\r\n]*"(?:[^"\\]|\\.)*"')


class ModelRename:
    """Rewrites `"model":"..."` members of answer bytes to the name the customer asked for."""

    __slots__ = ("replacement", "pattern")

    def __init__(self, asked: str) -> None:
        self.replacement = b'"model":' + orjson.dumps(asked)
        self.pattern: bytes | None = None  # learned from the first answer bytes that carry a model

    def apply(self, block: bytes) -> bytes:
        if not block:
            return block
        found = block.count(_MODEL_KEY)
        if not found:
            return block
        if self.pattern is None:
            match = _MODEL_FIELD.search(block)
            if match is None:
                return block  # a "model" that is not a string member: leave it
            self.pattern = match.group(0)
        if block.count(self.pattern) == found:
            return block.replace(self.pattern, self.replacement)
        replacement = self.replacement  # a function, not a template: the name may hold backslashes
        return _MODEL_FIELD.sub(lambda _m: replacement, block)  # the upstream changed its spelling


def renamer(model_name: str, enabled: bool) -> ModelRename | None:
    return ModelRename(model_name) if enabled else None
