"""Each llama.cpp context keeps its thread pool for as long as it lives (inference/llama_threads.py).

llama.cpp is built without OpenMP (tests/inference/test_llama_build.py). With no pool attached, its
CPU backend starts and ends a worker thread for every graph, every token; on 2 cores that cost more
than half of a stream's tokens/s whenever requests came with gaps. Each kind of llama.cpp tier is
loaded for real here (SmolLM2, the MiniLM GGUF): its workers start with the context, are the same
threads after it computed, sleep as soon as a graph is done (ggml's default would poll for about
150 ms after every request, taking a core from whatever else the process or the machine runs),
and end when the tier is closed.
"""
import os
import time

import pytest

from inference.backends.llamacpp import LlamaCppBackend
from inference.engines.llamacpp_batched import BatchedLlamaEngine
from inference.engines.llamacpp_embedding import LlamaEmbeddingBackend
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from inference.retrieval import EmbeddingRequest
from tests.inference.engine_driver import chat, solo

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")


def native_threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def cpu_ns(threads: set[str]) -> int:
    """CPU time the threads have run, in nanoseconds (the first field of schedstat)."""
    return sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[0]) for t in threads)


def chat_spec(backend, **load):
    from inference.bundled import smollm2_gguf

    return ModelSpec(name="light", backend=backend, kind="chat", model_path=smollm2_gguf(),
                     load={"n_ctx": 512, "n_threads": 2, **load}, defaults={})


def batched():
    engine = BatchedLlamaEngine.load(chat_spec("llamacpp", parallel=2))
    return engine, lambda: solo(engine, chat("Name three colors.", max_tokens=8, temperature=0)).text()


def serial():
    backend = LlamaCppBackend.load(chat_spec("llamacpp_serial"))
    request = GenerationRequest(sampling=resolve_sampling({"max_tokens": 8, "temperature": 0}, {}),
                                messages=(ChatMessage("user", "Name three colors."),))
    return backend, lambda: list(backend.generate(request, lambda: False))


def embedding():
    from inference.model_build import build_minilm_gguf

    backend = LlamaEmbeddingBackend.load(ModelSpec(name="embed-gguf", backend="llamacpp", kind="embedding",
                                                   model_path=str(build_minilm_gguf()),
                                                   load={"n_ctx": 256, "n_threads": 2}, defaults={}))
    texts = tuple(f"Sentence {i} is about a robot who paints picture {i}." for i in range(32))
    return backend, lambda: backend.run([backend.prepare(EmbeddingRequest(inputs=texts))])


@pytest.mark.parametrize("load", [batched, serial, embedding])
def test_a_context_keeps_its_workers_until_it_is_closed(load):
    before = native_threads()
    tier, compute = load()
    workers = native_threads() - before
    try:
        assert len(workers) == 1, f"a context on 2 threads keeps one worker besides its caller: {workers}"
        time.sleep(0.5)  # past the workers' first polling for work
        idle = cpu_ns(workers)
        compute()
        compute()
        assert workers <= native_threads(), "the pool's worker ended between graphs"
        worked = cpu_ns(workers) - idle
        assert worked > 10_000_000, f"the pool's worker ran {worked} ns: the context computed without it"
        done = cpu_ns(workers)
        time.sleep(0.3)
        spun = cpu_ns(workers) - done
        assert spun < 20_000_000, f"the idle worker kept a core busy for {spun / 1e6:.0f} ms after its last graph"
    finally:
        tier.close()
    assert not workers & native_threads(), "closing the tier left its pool's worker running"
