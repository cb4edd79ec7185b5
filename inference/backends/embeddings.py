"""Embedding backends: sentence-transformers models and BGE-M3 (dense + sparse + ColBERT).

Both run on their model's owner thread, served by a `ForwardPassEngine` (inference/engines/forward_pass.py).
https://sbert.net/docs/package_reference/sentence_transformer/SentenceTransformer.html
https://github.com/FlagOpen/FlagEmbedding/tree/master/research/BGE_M3
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from django.conf import settings

from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable, UnsupportedParameter

from ..engines.forward_pass import ForwardPassEngine
from ..options import EngineOptions, option, options_load
from ..retrieval import Embedding, EmbeddingRequest, EmbeddingResult, Prepared
from ..token_ids import decode_inputs
from ..torch_thread import computed, loaded

logger = logging.getLogger(__name__)

TOO_LONG = (
    "Input {index} has {tokens} tokens; the model '{model}' takes at most {limit}. "
    "Shorten it, or send \"truncate\": true to cut inputs to the limit."
)
NO_DIMENSIONS = "The model '{model}' does not support 'dimensions': {why}."
DIMENSIONS_TOO_LARGE = "'dimensions' must be at most {size} for the model '{model}'; got {dimensions}."
TOO_MANY_TOKENS = (
    "This request's inputs are {tokens} tokens in all; at most {limit} are allowed in one request "
    "(EMBEDDING_MAX_TOTAL_TOKENS). Send fewer or shorter inputs per request."
)
NO_EXTENSION = "'{param}' is only available from BGE-M3 tiers (backend bge_m3); '{model}' is a {backend} tier."


WRONG_BACKEND_KIND = "backend '{backend}' serves {kind} tiers, but tier '{name}' is of kind '{tier_kind}'"


class BatchOptions(EngineOptions):
    """Load options of an embedding or rerank tier."""

    batch_items: int = option(
        256, setting="BATCH_MAX_ITEMS", ge=1, description="Most texts (or query-document pairs) one forward pass takes."
    )
    gather_ms: float = option(
        10.0, setting="BATCH_GATHER_MS", ge=0, le=1000,
        description="Most milliseconds a forward pass waits for the requests expected to join it (0: never waits).",
    )


def model_dir_problems(spec, kind: str) -> list[str]:
    problems = []
    if spec.kind != kind:
        problems.append(WRONG_BACKEND_KIND.format(backend=spec.backend, kind=kind, name=spec.name, tier_kind=spec.kind))
    if not os.path.isdir(spec.model_path):
        problems.append(f"model directory not found: {spec.model_path}")
    return problems


def refuse_problems(spec, kind: str) -> None:
    """Loading a tier `check` objects to is a clear 503, not a crash on the first request."""
    problems = model_dir_problems(spec, kind)
    if problems:
        raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
    options_load(BatchOptions, spec)


def _offline() -> None:
    # Models are never downloaded at run time: make any attempt fail instead of reaching a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _cannot_load(spec, exc: Exception) -> ModelUnavailable:
    """The details (paths, exception) go to the log; the client hears the tier and directory name."""
    logger.exception("Loading %s from %s failed", spec.name, spec.model_path)
    name = os.path.basename(spec.model_path.rstrip("/"))
    return ModelUnavailable(f"Model '{spec.name}' cannot be loaded from its model directory '{name}'; see the server log.")


def truncate_dimensions(vector: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` values and renormalize (Matryoshka truncation)."""
    if dimensions is None or dimensions >= vector.shape[-1]:
        return vector
    cut = vector[:dimensions]
    norm = float(np.linalg.norm(cut))
    return cut / norm if norm > 0 else cut


class _EmbeddingBackend:
    """What both embedding backends share: decoding, length policy, batching by output options."""

    backend_name = ""
    supports_dimensions = False
    dimensions_why = ""
    supports_extensions = False

    def __init__(self, spec, tokenizer: Any, max_tokens: int, size: int):
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.size = size
        options = options_load(BatchOptions, spec)
        self.batch_items = options.batch_items
        self.gather_seconds = options.gather_ms / 1000

    @classmethod
    def check(cls, spec) -> list[str]:
        return model_dir_problems(spec, "embedding")

    def prepare(self, request: EmbeddingRequest) -> Prepared:
        self._check_options(request)
        texts = decode_inputs(request.inputs, tokenizer=self.tokenizer)
        counts = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        for index, count in enumerate(counts):
            if count > self.max_tokens and not request.truncate:
                raise ContextLengthExceeded(
                    TOO_LONG.format(index=index, tokens=count, model=self.spec.name, limit=self.max_tokens), param="input"
                )
        counts = [min(c, self.max_tokens) for c in counts]
        if sum(counts) > settings.EMBEDDING_MAX_TOTAL_TOKENS:
            raise InvalidRequest(
                TOO_MANY_TOKENS.format(tokens=sum(counts), limit=settings.EMBEDDING_MAX_TOTAL_TOKENS), param="input"
            )
        return Prepared(request, (request.return_sparse, request.return_colbert), counts, texts)

    def _check_options(self, request: EmbeddingRequest) -> None:
        for param, asked in (("return_sparse", request.return_sparse), ("return_colbert", request.return_colbert)):
            if asked and not self.supports_extensions:
                raise UnsupportedParameter(
                    NO_EXTENSION.format(param=param, model=self.spec.name, backend=self.backend_name), param=param
                )
        if request.dimensions is not None:
            if not self.supports_dimensions:
                raise UnsupportedParameter(NO_DIMENSIONS.format(model=self.spec.name, why=self.dimensions_why), param="dimensions")
            if request.dimensions > self.size:
                raise InvalidRequest(
                    DIMENSIONS_TOO_LARGE.format(size=self.size, model=self.spec.name, dimensions=request.dimensions),
                    param="dimensions",
                )

    def run(self, batch: list[Prepared]) -> list[EmbeddingResult]:
        texts = [text for prepared in batch for text in prepared.data]
        sparse, colbert = batch[0].group
        embeddings = computed(self._encode, texts, sparse=sparse, colbert=colbert)  # inference/torch_thread.py
        results, start = [], 0
        for prepared in batch:
            mine = embeddings[start : start + len(prepared.data)]
            start += len(prepared.data)
            dims = prepared.request.dimensions
            if dims is not None:
                mine = [Embedding(truncate_dimensions(e.dense, dims), e.sparse, e.colbert) for e in mine]
            results.append(EmbeddingResult(mine, sum(prepared.token_counts)))
        return results

    def _encode(self, texts: list[str], *, sparse: bool, colbert: bool) -> list[Embedding]:
        raise NotImplementedError


class SentenceTransformerBackend(_EmbeddingBackend):
    """Any sentence-transformers model directory (all-MiniLM-L6-v2 by default). Dense only.

    `dimensions` truncates and renormalizes, as sentence-transformers' `truncate_dim` does
    (meaningful for Matryoshka-trained models)."""

    backend_name = "sentence_transformers"
    supports_dimensions = True

    def __init__(self, spec, model):
        super().__init__(spec, model.tokenizer, model.max_seq_length, model.get_embedding_dimension())
        self.model = model

    @classmethod
    def load(cls, spec) -> "SentenceTransformerBackend":
        refuse_problems(spec, "embedding")
        _offline()
        try:
            from sentence_transformers import SentenceTransformer

            model = loaded(SentenceTransformer, spec.model_path, device="cpu", local_files_only=True)
        except Exception as exc:
            raise _cannot_load(spec, exc) from exc
        return cls(spec, model)

    def _encode(self, texts: list[str], *, sparse: bool, colbert: bool) -> list[Embedding]:
        vectors = self.model.encode(
            texts, batch_size=self.batch_items, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return [Embedding(np.asarray(v, dtype=np.float32)) for v in vectors]

    def close(self) -> None:
        del self.model


class BGEM3Backend(_EmbeddingBackend):
    """BGE-M3 through FlagEmbedding's BGEM3FlagModel: dense always; sparse lexical weights
    (token -> weight) and ColBERT vectors when asked."""

    backend_name = "bge_m3"
    supports_extensions = True
    dimensions_why = "BGE-M3's dense vectors are not trained to be truncated"

    def __init__(self, spec, model):
        config = model.model.model.config
        limit = min(model.tokenizer.model_max_length, config.max_position_embeddings)
        super().__init__(spec, model.tokenizer, limit, config.hidden_size)
        self.model = model

    @classmethod
    def load(cls, spec) -> "BGEM3Backend":
        refuse_problems(spec, "embedding")
        _offline()
        try:
            from .flag_compat import import_flagembedding

            flag = import_flagembedding()
            model = loaded(flag.BGEM3FlagModel, spec.model_path, use_fp16=False, devices="cpu", normalize_embeddings=True)
        except Exception as exc:
            raise _cannot_load(spec, exc) from exc
        return cls(spec, model)

    def _encode(self, texts: list[str], *, sparse: bool, colbert: bool) -> list[Embedding]:
        out = self.model.encode(
            texts,
            batch_size=self.batch_items,
            max_length=self.max_tokens,
            return_dense=True,
            return_sparse=sparse,
            return_colbert_vecs=colbert,
        )
        dense = np.asarray(out["dense_vecs"], dtype=np.float32).reshape(len(texts), -1)
        weights = out["lexical_weights"] if sparse else [None] * len(texts)
        vectors = out["colbert_vecs"] if colbert else [None] * len(texts)
        return [
            Embedding(
                dense[i],
                self._tokens(weights[i]) if sparse else None,
                np.asarray(vectors[i], dtype=np.float32) if colbert else None,
            )
            for i in range(len(texts))
        ]

    def _tokens(self, lexical_weights: dict) -> dict[str, float]:
        """{token id: weight} -> {token: weight} (as BGEM3FlagModel.convert_id_to_token does)."""
        tokens: dict[str, float] = {}
        for token_id, weight in lexical_weights.items():
            token = self.tokenizer.decode([int(token_id)])
            tokens[token] = max(float(weight), tokens.get(token, 0.0))
        return tokens

    def close(self) -> None:
        del self.model


class SentenceTransformerEngine(ForwardPassEngine):
    """sentence-transformers embedding tiers, requests batched into forward passes."""

    backend = SentenceTransformerBackend
    kinds = frozenset({"embedding"})
    options = BatchOptions


class BGEM3Engine(ForwardPassEngine):
    """BGE-M3 embedding tiers (dense, sparse, ColBERT), requests batched into forward passes."""

    backend = BGEM3Backend
    kinds = frozenset({"embedding"})
    options = BatchOptions
