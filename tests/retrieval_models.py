"""Helpers for tests of the embedding and rerank models (the model fixtures are in conftest.py)."""

from __future__ import annotations

from inference.params import ModelSpec


def retrieval_spec(name: str, kind: str, backend: str, path: str) -> ModelSpec:
    return ModelSpec(name=name, backend=backend, kind=kind, model_path=str(path), load={}, defaults={})


def cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
