"""Embeddings: run the batched request, shape the OpenAI embedding list (plus BGE-M3 extensions).

https://platform.openai.com/docs/api-reference/embeddings/object
"""

from __future__ import annotations

import base64

import numpy as np
from django.http import HttpResponse

from inference.manager import get_manager
from inference.params import ModelSpec
from inference.retrieval import Embedding
from registry.selectors import tier_spec_aget

from ..access import meter_tokens
from ..schemas.embeddings import EmbeddingRequest
from ..request_record import note_tokens
from .common import deadline, json_response, require_kind


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """float: JSON numbers; base64: the little-endian float32 bytes, as OpenAI sends them."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def embedding_object(index: int, embedding: Embedding, encoding_format: str) -> dict:
    data = {"object": "embedding", "index": index, "embedding": encode_vector(embedding.dense, encoding_format)}
    # --- llmservice extensions ---------------------------------------------------------------
    if embedding.sparse is not None:
        data["sparse_embedding"] = embedding.sparse
    if embedding.colbert is not None:
        data["colbert_embedding"] = embedding.colbert.tolist()
    return data


async def create_embeddings(body: EmbeddingRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved (and authorized) the tier."""
    spec = (spec or await tier_spec_aget(model=body.model)).with_keep_alive(body.keep_alive)
    require_kind(spec, "embedding", "embeddings")
    result = await get_manager().run_batched(spec, body.to_request(), deadline=deadline())
    await meter_tokens(prompt=result.prompt_tokens)
    note_tokens(prompt_tokens=result.prompt_tokens)
    return json_response(
        {
            "object": "list",
            "data": [embedding_object(i, e, body.encoding_format) for i, e in enumerate(result.embeddings)],
            "model": spec.name,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )
