"""Rerank backends: sentence-transformers' CrossEncoder and FlagEmbedding's FlagReranker.

A (query, document) pair longer than the model's limit is truncated (as both libraries and
Cohere do); scores are in [0, 1] (sigmoid of the model's logit).
https://sbert.net/docs/package_reference/cross_encoder/cross_encoder.html
https://github.com/FlagOpen/FlagEmbedding/tree/master/FlagEmbedding/inference/reranker
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from llmservice.errors import InvalidRequest

from ..engines.forward_pass import ForwardPassEngine
from ..options import options_load
from ..retrieval import Prepared, RerankRequest, RerankResult
from ..torch_thread import computed, loaded
from .embeddings import BatchOptions, _cannot_load, _offline, model_dir_problems, refuse_problems

logger = logging.getLogger(__name__)

TOO_MANY_TOKENS = (
    "This request is {tokens} tokens in all (the query with each document, truncated to the model's limit); "
    "at most {limit} are allowed in one request (RERANK_MAX_TOTAL_TOKENS). Send fewer or shorter documents."
)


class _RerankBackend:
    def __init__(self, spec, tokenizer: Any, max_tokens: int):
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        options = options_load(BatchOptions, spec)
        self.batch_items = options.batch_items
        self.gather_seconds = options.gather_ms / 1000

    @classmethod
    def check(cls, spec) -> list[str]:
        return model_dir_problems(spec, "rerank")

    def prepare(self, request: RerankRequest) -> Prepared:
        queries = [request.query] * len(request.documents)
        encoded = self.tokenizer(
            queries, list(request.documents), truncation="longest_first", max_length=self.max_tokens
        )
        counts = [len(ids) for ids in encoded["input_ids"]]
        if sum(counts) > settings.RERANK_MAX_TOTAL_TOKENS:
            raise InvalidRequest(
                TOO_MANY_TOKENS.format(tokens=sum(counts), limit=settings.RERANK_MAX_TOTAL_TOKENS), param="documents"
            )
        return Prepared(request, None, counts)

    def run(self, batch: list[Prepared]) -> list[RerankResult]:
        pairs = [(p.request.query, doc) for p in batch for doc in p.request.documents]
        scores = computed(self._score, pairs)  # inference/torch_thread.py
        results, start = [], 0
        for prepared in batch:
            count = len(prepared.request.documents)
            results.append(RerankResult(scores[start : start + count], sum(prepared.token_counts)))
            start += count
        return results

    def _score(self, pairs: list[tuple[str, str]]) -> list[float]:
        raise NotImplementedError


class CrossEncoderBackend(_RerankBackend):
    """A sentence-transformers CrossEncoder directory with one output label."""

    def __init__(self, spec, model):
        super().__init__(spec, model.tokenizer, model.max_seq_length)
        self.model = model

    @classmethod
    def load(cls, spec) -> "CrossEncoderBackend":
        refuse_problems(spec, "rerank")
        _offline()
        try:
            from sentence_transformers import CrossEncoder

            model = loaded(CrossEncoder, spec.model_path, device="cpu", local_files_only=True)
        except Exception as exc:
            raise _cannot_load(spec, exc) from exc
        return cls(spec, model)

    def _score(self, pairs: list[tuple[str, str]]) -> list[float]:
        scores = self.model.predict(pairs, batch_size=self.batch_items, show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores]

    def close(self) -> None:
        del self.model


class FlagRerankerBackend(_RerankBackend):
    """FlagEmbedding's FlagReranker (encoder-only cross-encoders such as bge-reranker)."""

    MAX_LENGTH = 512  # FlagReranker's default

    def __init__(self, spec, model):
        limit = min(self.MAX_LENGTH, model.tokenizer.model_max_length)
        super().__init__(spec, model.tokenizer, limit)
        self.model = model

    @classmethod
    def load(cls, spec) -> "FlagRerankerBackend":
        refuse_problems(spec, "rerank")
        _offline()
        try:
            from .flag_compat import import_flagembedding

            flag = import_flagembedding()
            model = loaded(flag.FlagReranker, spec.model_path, use_fp16=False, devices="cpu", normalize=True)
        except Exception as exc:
            raise _cannot_load(spec, exc) from exc
        return cls(spec, model)

    def _score(self, pairs: list[tuple[str, str]]) -> list[float]:
        scores = self.model.compute_score(pairs, batch_size=self.batch_items, max_length=self.max_tokens, normalize=True)
        if not isinstance(scores, list):  # one pair: FlagReranker returns a bare float
            scores = [scores]
        return [float(s) for s in scores]

    def close(self) -> None:
        del self.model


class CrossEncoderEngine(ForwardPassEngine):
    """sentence-transformers CrossEncoder rerank tiers, requests batched into forward passes."""

    backend = CrossEncoderBackend
    kinds = frozenset({"rerank"})
    options = BatchOptions


class FlagRerankerEngine(ForwardPassEngine):
    """FlagEmbedding FlagReranker rerank tiers, requests batched into forward passes."""

    backend = FlagRerankerBackend
    kinds = frozenset({"rerank"})
    options = BatchOptions
