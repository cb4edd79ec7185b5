"""The batched-decode limit, measured the way `llama-batched-bench` measures it, from Python.

`python -m bench.decode_limit MODEL --pl 1,4,8 --pp 128 --tg 64 [--mode raw|engine]` prints one
JSON object: generation tokens/s at each number of parallel sequences.
- `raw`: llama-cpp-python's low-level API only (llama_batch + llama_decode, no sampling), the same
  work as llama-batched-bench: what the binding and our build of llama.cpp can do.
- `engine`: our `BatchedLlamaEngine` (sampling, text, events) on `pl` greedy requests of `pp`
  prompt tokens and `tg` generated tokens each, driven directly (no HTTP).
- `reuse`: the time to first token of a conversation's second turn with prompt reuse and without
  (`--pp`: the system prompt's length in tokens, about), median of `--pl` repetitions.
Each runs in its own process (`run_subprocess`), so threads and libraries start clean; set
LLAMA_CPP_LIB_PATH to load another build of libllama (the one llama-batched-bench uses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def raw(model_path: str, pls: list[int], pp: int, tg: int, n_threads: int) -> dict[int, float]:
    import llama_cpp as lib
    from inference.engines.llamacpp_batch import TokenBatch
    from inference.llamacpp_common import route_llama_logs

    route_llama_logs()
    lib.llama_backend_init()
    model_params = lib.llama_model_default_params()
    model = lib.llama_model_load_from_file(model_path.encode(), model_params)
    params = lib.llama_context_default_params()
    params.n_ctx = max(pls) * (pp + tg)
    params.n_batch, params.n_ubatch, params.n_seq_max = 2048, 512, max(pls)
    params.n_threads = params.n_threads_batch = n_threads
    params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.kv_unified = False
    ctx = lib.llama_init_from_model(model, params)
    mem = lib.llama_get_memory(ctx)
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    batch = TokenBatch(lib, 2048)
    rng = np.random.default_rng(0)
    batch.add_run(rng.integers(n_vocab, size=16).tolist(), 0, 0, False)  # warm-up, as llama-batched-bench
    assert batch.decode(ctx) == 0
    result = {}
    for pl in pls:
        lib.llama_memory_clear(mem, False)
        batch.clear()
        for seq in range(pl):
            if batch.room < pp:
                assert batch.decode(ctx) == 0
                batch.clear()
            batch.add_run(rng.integers(n_vocab, size=pp).tolist(), 0, seq, True)
        assert batch.decode(ctx) == 0
        lib.llama_synchronize(ctx)
        started = time.perf_counter()
        for i in range(tg):
            batch.clear()
            for seq in range(pl):
                batch.add(int(rng.integers(n_vocab)), pp + i, seq, True)
            assert batch.decode(ctx) == 0
            lib.llama_synchronize(ctx)
        result[pl] = pl * tg / (time.perf_counter() - started)
    batch.free()
    lib.llama_free(ctx)
    lib.llama_model_free(model)
    return result


class _Job:
    """A request for the engine that only counts: when its first token came, how many it got."""

    def __init__(self, request):
        self.request = request
        self.cancelled = threading.Event()
        self.first: float | None = None
        self.tokens = 0
        self.text = ""

    def emit(self, event) -> None:
        from inference.events import Delta, Finished

        if isinstance(event, Delta):
            self.text += event.text
            if event.text and self.first is None:
                self.first, self.tokens = time.perf_counter(), 1
        elif isinstance(event, Finished):
            self.tokens = event.completion_tokens


def engine(model_path: str, pls: list[int], pp: int, tg: int, n_threads: int) -> dict[int, float]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")
    from inference.engines.llamacpp_batched import BatchedLlamaEngine
    from inference.params import GenerationRequest, ModelSpec, SamplingParams

    load = {"n_ctx": pp + tg + 8, "parallel": max(pls), "n_threads": n_threads, "n_batch": 2048, "prefill_chunk": 2048}
    spec = ModelSpec(name="bench", backend="llamacpp", kind="chat", model_path=model_path, load=load, defaults={})
    eng = BatchedLlamaEngine.load(spec)
    lib, vocab, n_vocab = eng._lib, eng._vocab, eng._n_vocab
    no_end = {t: -100.0 for t in range(n_vocab) if lib.llama_vocab_is_eog(vocab, t)}  # exactly tg tokens each
    sampling = SamplingParams(temperature=0.0, max_tokens=tg, logit_bias=no_end)
    rng = np.random.default_rng(0)
    result = {}
    for pl in pls:
        # Random prompts share nothing: no slot's cells are reused.
        jobs = [_Job(GenerationRequest(sampling=sampling, prompt=tuple(rng.integers(100, n_vocab, size=pp).tolist())))
                for _ in range(pl)]
        for job in jobs:
            eng.admit(job)
        while any(j.first is None for j in jobs):
            eng.step()
        started, base = time.perf_counter(), sum(j.tokens for j in jobs)
        while eng.active():
            eng.step()
        result[pl] = (sum(j.tokens for j in jobs) - base) / (time.perf_counter() - started)
    eng.close()
    return result


SYSTEM = "You are a careful assistant. Follow the house style guide below in every answer.\n"
RULE = "Rule {i}: keep sentences short, cite the source of every figure, and never guess a date.\n"


def reuse(model_path: str, pls: list[int], pp: int, tg: int, n_threads: int) -> dict[str, float]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")
    from inference.engines.llamacpp_batched import BatchedLlamaEngine
    from inference.params import ChatMessage, GenerationRequest, ModelSpec, SamplingParams

    system = SYSTEM + "".join(RULE.format(i=i) for i in range(max(1, pp // 20)))
    sampling = SamplingParams(temperature=0.0, max_tokens=tg)
    result = {}
    for label, enabled in (("with", True), ("without", False)):
        load = {"n_ctx": 4096, "parallel": 2, "n_threads": n_threads, "prompt_reuse": enabled}
        eng = BatchedLlamaEngine.load(ModelSpec(name="bench", backend="llamacpp", kind="chat", model_path=model_path,
                                                load=load, defaults={}))
        times = []
        for i in range(pls[0]):
            first = (ChatMessage("system", system), ChatMessage("user", f"Question {i}: what is the capital of France?"))
            turn1 = _Job(GenerationRequest(sampling=sampling, messages=first))
            _serve(eng, turn1)
            answer = ChatMessage("assistant", turn1.text)
            turn2 = _Job(GenerationRequest(sampling=sampling, messages=(*first, answer, ChatMessage("user", "And of Italy?"))))
            started = time.perf_counter()
            _serve(eng, turn2)
            times.append(turn2.first - started)
        eng.close()
        result[label] = float(np.median(times))
    return result


def _serve(eng, job: "_Job") -> None:
    eng.admit(job)
    while eng.active():
        eng.step()


def run_subprocess(mode: str, model_path: str, pls: list[int], pp: int, tg: int, n_threads: int,
                   lib_path: str | None = None) -> dict:
    """Run one measurement in a fresh Python process; {parallel sequences: generated tokens/s}."""
    env = dict(os.environ)
    if lib_path:
        env["LLAMA_CPP_LIB_PATH"] = lib_path
        env["LD_LIBRARY_PATH"] = lib_path
    command = [sys.executable, "-m", "bench.decode_limit", model_path, "--mode", mode, "--pl", ",".join(map(str, pls)),
               "--pp", str(pp), "--tg", str(tg), "--threads", str(n_threads)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    return {int(k) if k.isdigit() else k: v for k, v in json.loads(line).items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_limit", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--mode", choices=("raw", "engine", "reuse"), default="raw")
    parser.add_argument("--pl", default="1,4,8")
    parser.add_argument("--pp", type=int, default=128)
    parser.add_argument("--tg", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    pls = [int(x) for x in args.pl.split(",")]
    run = {"raw": raw, "engine": engine, "reuse": reuse}[args.mode]
    print(json.dumps(run(args.model, pls, args.pp, args.tg, args.threads)))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
