"""The embeddings request, mirroring OpenAI's spec, and its conversion to the neutral request.

https://platform.openai.com/docs/api-reference/embeddings/create
"""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from pydantic import Field, field_validator

from inference.retrieval import EmbeddingRequest as NeutralEmbeddingRequest
from llmservice.errors import InvalidRequest

from .common import KeepAliveExtension, StrictModel

EMPTY_INPUT = "'input' must not be empty: send a non-empty string, or a non-empty list of them."
EMPTY_ITEM = "'input' item {index} is empty; every input must contain at least one character or token."
INPUT_SHAPE = "must be a string, a list of strings, a list of token ids, or a list of lists of token ids"
TOO_MANY_INPUTS = "'input' has {count} items; at most {limit} are allowed in one request."


class EmbeddingRequest(KeepAliveExtension):
    """https://platform.openai.com/docs/api-reference/embeddings/create"""

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, a list of strings, a list of token ids, or a list of lists of token ids."
    )
    model: str
    dimensions: int | None = Field(None, ge=1, description="Truncate (and renormalize) to this many dimensions.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: JSON numbers; base64: little-endian float32 bytes, base64-encoded."
    )
    user: str | None = None

    # --- llmservice extensions (not in the OpenAI spec) -------------------------------------
    return_sparse: bool = Field(
        False, description="Extension (BGE-M3 tiers): add `sparse_embedding`, token -> lexical weight."
    )
    return_colbert: bool = Field(
        False, description="Extension (BGE-M3 tiers): add `colbert_embedding`, one vector per token."
    )
    truncate: bool = Field(
        False, description="Extension: cut inputs longer than the model's limit instead of answering 400."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value):
        """One clear message for any other shape (pydantic would name a union member instead)."""

        def token_ids(item) -> bool:
            return isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)

        if isinstance(value, str) or (
            isinstance(value, list)
            and (all(isinstance(v, str) for v in value) or token_ids(value) or all(token_ids(v) for v in value))
        ):
            return value
        raise ValueError(INPUT_SHAPE)

    def inputs(self) -> tuple[str | tuple[int, ...], ...]:
        """The inputs as texts and token-id tuples, checked for emptiness and count."""
        raw = self.input
        if isinstance(raw, str):
            items: list = [raw]
        elif raw and isinstance(raw[0], int):
            items = [tuple(raw)]  # one list of token ids is one input
        else:
            items = [item if isinstance(item, str) else tuple(item) for item in raw]
        if not items:
            raise InvalidRequest(EMPTY_INPUT, param="input")
        if len(items) > settings.EMBEDDING_MAX_INPUTS:
            raise InvalidRequest(TOO_MANY_INPUTS.format(count=len(items), limit=settings.EMBEDDING_MAX_INPUTS), param="input")
        for index, item in enumerate(items):
            if len(item) == 0:
                raise InvalidRequest(EMPTY_ITEM.format(index=index) if len(items) > 1 else EMPTY_INPUT, param="input")
        return tuple(items)

    def to_request(self) -> NeutralEmbeddingRequest:
        return NeutralEmbeddingRequest(
            inputs=self.inputs(),
            dimensions=self.dimensions,
            return_sparse=self.return_sparse,
            return_colbert=self.return_colbert,
            truncate=self.truncate,
        )
