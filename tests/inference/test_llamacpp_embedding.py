"""GGUF embeddings on llama.cpp: all-MiniLM-L6-v2 converted by llama.cpp's own converter
(`manage.py build_models`), compared with sentence-transformers on the original weights."""

import re

import numpy as np
import pytest

from inference.engines.llamacpp_embedding import NOT_AN_EMBEDDING_MODEL, LlamaEmbeddingBackend
from inference.params import ModelSpec
from inference.retrieval import EmbeddingRequest
from llmservice.errors import ContextLengthExceeded, ModelUnavailable

TEXTS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Interest rates are the price of borrowing money.",
    "Knead the dough for ten minutes, let it rise, then bake the loaf.",
    "ok",
    "Jupiter is the largest planet in the solar system, followed by Saturn. " * 30,  # cut at 256 tokens
]


def spec(path, kind="embedding", **load):
    return ModelSpec(name="embed-gguf", backend="llamacpp", kind=kind, model_path=str(path), load=load, defaults={})


@pytest.fixture(scope="module")
def gguf_path():
    from inference.model_build import build_minilm_gguf

    return build_minilm_gguf()  # already there after `make models`; seconds otherwise


@pytest.fixture(scope="module")
def backend(gguf_path):
    b = LlamaEmbeddingBackend.load(spec(gguf_path, n_ctx=256))  # sentence-transformers' max_seq_length for MiniLM
    yield b
    b.close()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    from inference.bundled import minilm_dir

    return SentenceTransformer(minilm_dir(), device="cpu", local_files_only=True)


def embed(backend, *requests):
    prepared = [backend.prepare(r) for r in requests]
    return backend.run(prepared)


def test_vectors_match_sentence_transformers(backend, reference):
    [result] = embed(backend, EmbeddingRequest(inputs=tuple(TEXTS), truncate=True))
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    assert len(result.embeddings) == len(TEXTS)
    for got, want in zip(result.embeddings, expected):
        assert got.dense.shape == (384,) and got.dense.dtype == np.float32
        assert float(np.linalg.norm(got.dense)) == pytest.approx(1.0, abs=1e-5)
        assert float(np.dot(got.dense, want)) > 0.99
    assert result.prompt_tokens == sum(min(len(reference.tokenizer(t)["input_ids"]), 256) for t in TEXTS)


def test_requests_batched_together_get_their_own_vectors(backend, reference):
    requests = [EmbeddingRequest(inputs=(t,)) for t in TEXTS[:4]] + [EmbeddingRequest(inputs=tuple(TEXTS[:3]))]
    results = embed(backend, *requests)
    expected = reference.encode(TEXTS[:4], normalize_embeddings=True)
    for i in range(4):
        assert float(np.dot(results[i].embeddings[0].dense, expected[i])) > 0.99
    assert [float(np.dot(e.dense, w)) > 0.99 for e, w in zip(results[4].embeddings, expected)] == [True] * 3


def test_more_texts_than_one_decode_holds(gguf_path, reference):
    small = LlamaEmbeddingBackend.load(spec(gguf_path, n_batch=64, n_ctx=64))  # forces several llama_decode calls
    try:
        texts = [f"Sentence number {i} is about {w}." for i, w in enumerate(["cats", "tax", "rain", "jazz"] * 10)]
        [result] = embed(small, EmbeddingRequest(inputs=tuple(texts)))
        expected = reference.encode(texts, normalize_embeddings=True)
        assert min(float(np.dot(e.dense, w)) for e, w in zip(result.embeddings, expected)) > 0.99
    finally:
        small.close()


def test_dimensions_truncate_and_renormalize(backend):
    [full, cut] = embed(backend, EmbeddingRequest(inputs=(TEXTS[0],)), EmbeddingRequest(inputs=(TEXTS[0],), dimensions=64))
    short = cut.embeddings[0].dense
    assert short.shape == (64,) and float(np.linalg.norm(short)) == pytest.approx(1.0, abs=1e-5)
    head = full.embeddings[0].dense[:64]
    assert np.allclose(short, head / np.linalg.norm(head), atol=1e-6)


def test_too_long_without_truncate_is_refused(backend):
    with pytest.raises(ContextLengthExceeded) as info:
        backend.prepare(EmbeddingRequest(inputs=(TEXTS[5],)))
    assert info.value.param == "input" and "256" in info.value.message


def test_a_chat_gguf_is_not_an_embedding_model(smollm2_path):
    with pytest.raises(ModelUnavailable, match=re.escape(NOT_AN_EMBEDDING_MODEL)):
        LlamaEmbeddingBackend.load(spec(smollm2_path))


def test_a_chat_tier_kind_is_refused(gguf_path):
    assert LlamaEmbeddingBackend.check(spec(gguf_path, kind="chat"))
