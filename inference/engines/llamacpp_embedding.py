"""GGUF embedding models (nomic-embed, bge, e5, MiniLM GGUFs: what Ollama serves) on llama.cpp.

One `llama_context` with embeddings on and the model's own pooling (mean, CLS, last: from the
GGUF); a batch of texts goes through in as few `llama_decode` calls as the token budget allows,
one sequence per text, and each text's pooled vector is L2-normalized (as sentence-transformers'
`normalize_embeddings=True`). Served with the same dynamic batching as the other embedding
backends (`LlamaEmbeddingEngine`, a `ForwardPassEngine`: `prepare` one request, `run` a group of them).
https://github.com/ggml-org/llama.cpp/blob/master/examples/embedding/embedding.cpp
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from llmservice.errors import ModelUnavailable

from ..backends.embeddings import WRONG_BACKEND_KIND, BatchOptions, _EmbeddingBackend
from ..gguf import gguf_problem
from ..llamacpp_common import free_context, gguf_context, gguf_model_load
from ..options import option, options_load
from ..retrieval import Embedding
from .forward_pass import ForwardPassEngine
from .llamacpp_batch import TokenBatch

logger = logging.getLogger(__name__)

NOT_AN_EMBEDDING_MODEL = "the GGUF has no pooling (not an embedding model); it cannot serve an embedding tier"


class LlamaEmbeddingOptions(BatchOptions):
    """Load options of a llama.cpp embedding tier."""

    n_ctx: int | None = option(None, ge=8, description="Most tokens per input (empty: the model's training context).")
    n_batch: int = option(2048, ge=8, description="Most tokens in one llama_decode (several inputs share it).")
    n_threads: int | None = option(None, setting="N_THREADS", ge=0, description="CPU threads (0: every core).")
    n_gpu_layers: int = option(0, setting="N_GPU_LAYERS", ge=-1, description="Layers offloaded to a GPU (-1: all).")


class LlamaTokenizer:
    """The slice of a Hugging Face tokenizer the embedding backends use, over a llama.cpp vocabulary."""

    def __init__(self, model: Any):
        self._model = model

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [self.encode(t, add_special_tokens) for t in texts]}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_special_tokens, False)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._model.detokenize(ids, special=not skip_special_tokens).decode("utf-8", "replace")

    def __len__(self) -> int:
        return self._model.n_vocab()


class LlamaEmbeddingBackend(_EmbeddingBackend):
    """A GGUF embedding model; `dimensions` truncates and renormalizes (Matryoshka models)."""

    backend_name = "llamacpp"
    supports_dimensions = True

    def __init__(self, spec, model: Any, ctx: Any, max_tokens: int, n_batch: int):
        import llama_cpp

        super().__init__(spec, LlamaTokenizer(model), max_tokens, llama_cpp.llama_model_n_embd(model.model))
        self._lib = llama_cpp
        self._model = model
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._n_seq = llama_cpp.llama_n_seq_max(ctx)
        self._batch = TokenBatch(llama_cpp, n_batch)
        self._sep = llama_cpp.llama_vocab_sep(model.vocab)
        self._eos = llama_cpp.llama_vocab_eos(model.vocab)

    @classmethod
    def check(cls, spec) -> list[str]:
        problems = []
        if spec.kind != "embedding":
            problems.append(WRONG_BACKEND_KIND.format(backend=spec.backend, kind="embedding", name=spec.name,
                                                      tier_kind=spec.kind))
        if not os.path.isfile(spec.model_path):
            problems.append(f"model file not found: {spec.model_path}")
        elif problem := gguf_problem(spec.model_path):
            problems.append(problem)
        return problems

    @classmethod
    def load(cls, spec) -> "LlamaEmbeddingBackend":
        problems = cls.check(spec)
        if problems:
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
        opts = options_load(LlamaEmbeddingOptions, spec)
        import llama_cpp

        model = gguf_model_load(spec, opts.n_gpu_layers)
        max_tokens = min(opts.n_ctx or model.n_ctx_train(), model.n_ctx_train())
        n_batch = max(opts.n_batch, max_tokens)
        ctx = gguf_context(spec, model, _context_params(llama_cpp, n_batch, opts.n_threads))
        if llama_cpp.llama_pooling_type(ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            free_context(ctx)
            model.close()
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {NOT_AN_EMBEDDING_MODEL}.")
        return cls(spec, model, ctx, max_tokens, n_batch)

    def _encode(self, texts: list[str], *, sparse: bool, colbert: bool) -> list[Embedding]:
        ids = [self._fit(self.tokenizer.encode(t)) for t in texts]
        vectors: list[np.ndarray] = []
        start = 0
        while start < len(ids):  # as many texts per llama_decode as the token budget and sequences allow
            end = start
            used = 0
            while end < len(ids) and end - start < self._n_seq and used + len(ids[end]) <= self._batch.capacity:
                used += len(ids[end])
                end += 1
            vectors.extend(self._decode(ids[start:end]))
            start = end
        return [Embedding(v) for v in vectors]

    def _fit(self, tokens: list[int]) -> list[int]:
        """Cut to the model's limit, keeping the closing separator BERT-style models end with."""
        if len(tokens) <= self.max_tokens:
            return tokens or [self._eos]
        last = tokens[-1]
        closing = last in (self._sep, self._eos) and last >= 0
        return tokens[: self.max_tokens - 1] + [last] if closing else tokens[: self.max_tokens]

    def _decode(self, group: list[list[int]]) -> list[np.ndarray]:
        lib, batch = self._lib, self._batch
        lib.llama_memory_clear(self._mem, True)
        batch.clear()
        for seq, tokens in enumerate(group):
            batch.add_run(tokens, 0, seq, True, logits_all=True)  # pooling reads every token
        code = batch.decode(self._ctx)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        size = self.size
        out = []
        for seq in range(len(group)):
            vector = np.ctypeslib.as_array(lib.llama_get_embeddings_seq(self._ctx, seq), shape=(size,)).copy()
            norm = float(np.linalg.norm(vector))
            out.append(vector / norm if norm > 0 else vector)
        return out

    def close(self) -> None:
        self._batch.free()
        if self._ctx is not None:
            free_context(self._ctx)
            self._ctx = None
        self._model.close()


def _context_params(lib: Any, n_batch: int, n_threads: int | None) -> Any:
    params = lib.llama_context_default_params()
    params.embeddings = True
    params.n_ctx = params.n_batch = params.n_ubatch = n_batch  # non-causal models need the whole text in one ubatch
    params.n_seq_max = min(lib.llama_max_parallel_sequences(), 256, n_batch)  # llama.cpp: at most n_batch outputs
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = n_threads or (os.cpu_count() or 1)
    params.no_perf = True
    return params


class LlamaEmbeddingEngine(ForwardPassEngine):
    """llama.cpp embedding tiers (GGUF embedding models), requests batched into forward passes."""

    backend = LlamaEmbeddingBackend
    kinds = frozenset({"embedding"})
    options = LlamaEmbeddingOptions
