"""Embeddings: run the batched request, shape the OpenAI embedding list (plus BGE-M3 extensions).

https://platform.openai.com/docs/api-reference/embeddings/object
"""

from __future__ import annotations

import base64

import numpy as np
import orjson
from django.http import HttpResponse

from inference.manager import get_manager
from inference.params import ModelSpec
from inference.retrieval import Embedding
from registry.selectors import tier_spec_aget

from ..access import meter_tokens
from ..schemas.embeddings import EmbeddingRequest
from ..request_record import note_tokens
from ..remote import is_remote, remote_json
from .common import deadline, require_kind


def encode_vector(vector: np.ndarray, encoding_format: str) -> np.ndarray | str:
    """float: the float32 array (JSON numbers, written by orjson); base64: its little-endian
    bytes, as OpenAI sends them."""
    vector = np.ascontiguousarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(vector.tobytes()).decode("ascii")
    return vector


def embedding_object(index: int, embedding: Embedding, encoding_format: str) -> dict:
    data = {"object": "embedding", "index": index, "embedding": encode_vector(embedding.dense, encoding_format)}
    # --- llmservice extensions ---------------------------------------------------------------
    if embedding.sparse is not None:
        data["sparse_embedding"] = embedding.sparse
    if embedding.colbert is not None:
        data["colbert_embedding"] = np.ascontiguousarray(embedding.colbert, dtype="<f4")
    return data


async def create_embeddings(body: EmbeddingRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved (and authorized) the tier."""
    spec = (spec or await tier_spec_aget(model=body.model)).with_keep_alive(body.keep_alive)
    require_kind(spec, "embedding", "embeddings")
    if is_remote(spec):  # issue 16: relayed to the tier's upstream
        return await remote_json(body, spec=spec, path="embeddings")
    result = await get_manager().run_batched(spec, body.to_request(), deadline=deadline())
    await meter_tokens(prompt=result.prompt_tokens)
    note_tokens(prompt_tokens=result.prompt_tokens)
    body_json = orjson.dumps(  # numpy arrays as they are: about 25x faster than json.dumps of lists
        {
            "object": "list",
            "data": [embedding_object(i, e, body.encoding_format) for i, e in enumerate(result.embeddings)],
            "model": spec.name,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return HttpResponse(body_json, content_type="application/json")
