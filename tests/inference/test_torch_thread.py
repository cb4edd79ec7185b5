"""Every torch forward pass of the process runs on one thread (inference/torch_thread.py), whichever
tier asks, so libgomp keeps a single team of workers; a model loads on a thread that ends with the
load. Real models: MiniLM and the reranker the project builds, through the manager (each tier on
its own owner thread, as in the server)."""

from __future__ import annotations

import asyncio
import threading

from inference.backends.embeddings import SentenceTransformerBackend
from inference.backends.rerankers import CrossEncoderBackend, FlagRerankerBackend
from inference.retrieval import EmbeddingRequest, RerankRequest
from inference.torch_thread import THREAD_NAME
from tests.retrieval_models import retrieval_spec


def spy_threads(monkeypatch, cls, method: str, seen: list) -> None:
    original = getattr(cls, method)

    def recorded(self, *args, **kwargs):
        seen.append((cls.__name__, threading.current_thread().name))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, recorded)


async def test_three_torch_tiers_compute_on_one_thread_and_load_on_threads_that_end(
    manager, minilm_path, reranker_path, monkeypatch
):
    seen: list[tuple[str, str]] = []
    for cls, method in ((SentenceTransformerBackend, "_encode"), (CrossEncoderBackend, "_score"),
                        (FlagRerankerBackend, "_score")):
        spy_threads(monkeypatch, cls, method, seen)
    embed = retrieval_spec("embed", "embedding", "sentence_transformers", minilm_path)
    cross = retrieval_spec("rerank-ce", "rerank", "cross_encoder", reranker_path)
    flag = retrieval_spec("rerank-flag", "rerank", "flag_reranker", reranker_path)
    rerank = RerankRequest(query="Where does the cat sleep?", documents=("On the sofa.", "Interest rates rose."))
    for _ in range(2):  # all three tiers loaded and asked at once
        embedded, *reranked = await asyncio.gather(
            manager.run_batched(embed, EmbeddingRequest(inputs=("A cat sleeps on the sofa.",))),
            manager.run_batched(cross, rerank),
            manager.run_batched(flag, rerank),
        )
        assert len(embedded.embeddings) == 1 and all(len(r.scores) == 2 for r in reranked)

    assert sorted({cls for cls, _ in seen}) == ["CrossEncoderBackend", "FlagRerankerBackend", "SentenceTransformerBackend"]
    threads = {name for _, name in seen}
    assert len(threads) == 1 and threads.pop().startswith(THREAD_NAME), seen
    assert not [t.name for t in threading.enumerate() if t.name.startswith("torch-load")]
