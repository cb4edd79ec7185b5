"""Dynamic batching of embedding requests: N concurrent one-text requests, batched vs one by one.

    .venv/bin/python bench/embeddings_batching.py [--requests 64] [--rounds 3]

Prints requests/second for both in the same run and their ratio (the real all-MiniLM-L6-v2 model).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")

import django  # noqa: E402

django.setup()

from inference.engines import forward_pass  # noqa: E402
from inference.bundled import minilm_dir  # noqa: E402
from inference.manager import get_manager  # noqa: E402
from inference.params import ModelSpec  # noqa: E402
from inference.retrieval import EmbeddingRequest  # noqa: E402

TEXTS = [f"Sentence number {i} about a topic such as cooking, travel or the weather." for i in range(1024)]


async def burst(spec: ModelSpec, count: int) -> float:
    manager = get_manager()
    started = time.perf_counter()
    await asyncio.gather(*(manager.run_batched(spec, EmbeddingRequest(inputs=(TEXTS[i],))) for i in range(count)))
    return count / (time.perf_counter() - started)


async def main(requests: int, rounds: int) -> None:
    spec = ModelSpec(name="embed", backend="sentence_transformers", kind="embedding", model_path=minilm_dir(), load={}, defaults={})
    get_manager().warm(spec)
    await burst(spec, 8)  # warm-up
    results = {}
    for label, max_jobs in (("one by one", 1), ("batched", 64)):
        forward_pass.MAX_JOBS_PER_BATCH = max_jobs
        results[label] = max([await burst(spec, requests) for _ in range(rounds)])
        print(f"{label:>10}: {results[label]:7.1f} requests/s ({requests} concurrent, best of {rounds})")
    print(f"     ratio: {results['batched'] / results['one by one']:.2f}x")
    get_manager().unload_all(wait=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
