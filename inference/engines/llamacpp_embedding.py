"""GGUF embedding models (nomic-embed, bge, e5, MiniLM GGUFs: what Ollama serves) on llama.cpp.

One `llama_context` with embeddings on and the model's own pooling (mean, CLS, last: from the
GGUF); a batch of texts goes through in as few `llama_decode` calls as the token budget allows,
one sequence per text, and each text's pooled vector is L2-normalized (as sentence-transformers'
`normalize_embeddings=True`). Served with the same dynamic batching as the other embedding
backends (`prepare` one request, `run` a group of them).
https://github.com/ggml-org/llama.cpp/blob/master/examples/embedding/embedding.cpp
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from llmservice.errors import ModelUnavailable

from ..backends.embeddings import WRONG_BACKEND_KIND, _EmbeddingBackend
from ..gguf import gguf_problem
from ..llamacpp_common import route_llama_logs
from ..retrieval import Embedding
from .llamacpp_batch import TokenBatch

logger = logging.getLogger(__name__)

NOT_AN_EMBEDDING_MODEL = "the GGUF has no pooling (not an embedding model); it cannot serve an embedding tier"


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
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        route_llama_logs()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = _gpu_layers(spec.load.get("n_gpu_layers"))
        try:
            model = LlamaModel(path_model=spec.model_path, params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc
        max_tokens = min(spec.load.get("n_ctx") or model.n_ctx_train(), model.n_ctx_train())
        n_batch = max(spec.load.get("n_batch") or 2048, max_tokens)
        ctx = llama_cpp.llama_init_from_model(model.model, _context_params(llama_cpp, n_batch, spec.load.get("n_threads")))
        if not ctx:
            model.close()
            raise ModelUnavailable(f"Model '{spec.name}' failed to load: llama.cpp could not create its context.")
        if llama_cpp.llama_pooling_type(ctx) == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            llama_cpp.llama_free(ctx)
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
            self._lib.llama_free(self._ctx)
            self._ctx = None
        self._model.close()


def _gpu_layers(value: int | None) -> int:
    return 0x7FFFFFFF if value is not None and value < 0 else (value or 0)


def _context_params(lib: Any, n_batch: int, n_threads: int | None) -> Any:
    params = lib.llama_context_default_params()
    params.embeddings = True
    params.n_ctx = params.n_batch = params.n_ubatch = n_batch  # non-causal models need the whole text in one ubatch
    params.n_seq_max = min(lib.llama_max_parallel_sequences(), 256, n_batch)  # llama.cpp: at most n_batch outputs
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = n_threads or (os.cpu_count() or 1)
    params.no_perf = True
    return params
