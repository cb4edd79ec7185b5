"""Neutral types of embedding and rerank requests: what the batched backends see (no HTTP).

Token-id inputs are decoded to text by the backend's `prepare` (inference/token_ids.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """Embed each input (text, or token ids to decode); dense always, sparse and ColBERT when asked."""

    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None  # truncate and renormalize the dense vectors
    return_sparse: bool = False
    return_colbert: bool = False
    truncate: bool = False  # False: a text over the model's limit is a 400; True: cut to the limit


@dataclass(frozen=True, slots=True)
class Embedding:
    dense: np.ndarray  # float32, L2-normalized
    sparse: dict[str, float] | None = None  # token -> weight
    colbert: np.ndarray | None = None  # (tokens, dim) float32


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    embeddings: list[Embedding]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """Score each document against `query` (pairs longer than the model's limit are truncated)."""

    query: str
    documents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RerankResult:
    scores: list[float]  # one per document, in input order
    prompt_tokens: int


@dataclass(slots=True)
class Prepared:
    """A request a backend has validated and tokenized, ready to join a batch.

    `group` says which requests can share one forward pass (same output options)."""

    request: Any
    group: Any
    token_counts: list[int]
    data: Any = None


class BatchBackend(Protocol):
    """A loaded embedding or rerank model. Every method runs on the model's one owner thread."""

    @classmethod
    def check(cls, spec) -> list[str]: ...

    @classmethod
    def load(cls, spec) -> "BatchBackend": ...

    def prepare(self, request: Any) -> Prepared:
        """Validate and tokenize one request; raise a ServiceError for this request alone."""
        ...

    def run(self, batch: list[Prepared]) -> list[Any]:
        """One batched computation over requests of one group; a result per request, in order."""
        ...

    def close(self) -> None: ...
