"""Answers name the model the customer asked for, and carry the gateway's request id.

The `model` member of a unary answer and of every stream chunk is rewritten to the catalog
name the request used (per model: `rewrite_model`, default on); the upstream's id stays in
the usage record. A chat answer's top-level `id` becomes the gateway's request id (the one
in `X-Request-Id`), so the SDK's `response.id` leads to the receipt (`GET /v1/generation`).

Hot path: no chunk is parsed and re-serialised. The exact bytes of the first
`"model":"<upstream id>"` member are learned from the answer (whatever spacing the
upstream's serializer uses) and replaced with `bytes.replace`; only a block with a
`"model"` member spelled otherwise goes through a regex substitution. The `id` is renamed
only where its learned bytes appear exactly: tool calls have `id` members of their own,
which must stay (the learned one is the first `id` of the answer, the top-level one in
every OpenAI-shaped serializer).

Why a byte match is safe: inside a JSON string every `"` is escaped, so `"model"` followed
by `:` and a string can only be an object member, never text the model generated. Hazard: a
nested object's own `"model"` member (none in OpenAI's chat or embedding shapes) is renamed too.
"""

from __future__ import annotations

import re

import orjson

_MODEL_KEY = b'"model"'
_ID_KEY = b'"id"'
# An object member `"<key>": "<JSON string>"`, any spacing around the colon.
_MODEL_FIELD = re.compile(rb'"model"[ \t\r\n]*:[ \t\r\n]*"(?:[^"\\]|\\.)*"')
_ID_FIELD = re.compile(rb'"id"[ \t\r\n]*:[ \t\r\n]*"(?:[^"\\]|\\.)*"')


class AnswerRename:
    """Rewrites the `model` members (and the top-level `id`) of answer bytes."""

    __slots__ = ("model", "model_bytes", "id", "id_bytes")

    def __init__(self, model: str | None, request_id: str | None = None) -> None:
        self.model = b'"model":' + orjson.dumps(model) if model is not None else None
        self.id = b'"id":' + orjson.dumps(request_id) if request_id is not None else None
        self.model_bytes: bytes | None = None  # learned from the first answer bytes that carry them
        self.id_bytes: bytes | None = None

    def apply(self, block: bytes) -> bytes:
        if self.model is not None and _MODEL_KEY in block:
            block = self._model(block)
        if self.id is not None:
            if self.id_bytes is None:
                match = _ID_FIELD.search(block)
                if match is None:
                    return block
                self.id_bytes = match.group(0)
            block = block.replace(self.id_bytes, self.id)
        return block

    def _model(self, block: bytes) -> bytes:
        model = self.model
        if model is None:
            return block
        if self.model_bytes is None:
            match = _MODEL_FIELD.search(block)
            if match is None:
                return block  # a "model" that is not a string member: leave it
            self.model_bytes = match.group(0)
        if block.count(self.model_bytes) == block.count(_MODEL_KEY):
            return block.replace(self.model_bytes, model)
        # A function, not a template: the name may hold backslashes.
        return _MODEL_FIELD.sub(lambda _m: model, block)  # the upstream changed its spelling


def renamer(model_name: str, rewrite_model: bool, request_id: str | None = None) -> AnswerRename | None:
    if not rewrite_model and request_id is None:
        return None
    return AnswerRename(model_name if rewrite_model else None, request_id)
