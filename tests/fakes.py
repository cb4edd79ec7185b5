"""A fake backend, for testing the manager's queueing and the HTTP layer without a model.

`FakeEngine` serves it under the engine contract through the real `SerialEngine` adapter, as
llama.cpp tiers are served; it is registered as backend "fake" (tests/conftest.py). Tests that
claim a real backend works use the real one (tests/inference/test_llamacpp.py, e2e).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from inference.engines.forward_pass import ForwardPassEngine
from inference.engines.serial import SerialEngine
from inference.events import Delta, Finished, Started, Thinking
from inference.options import EngineOptions, option
from inference.retrieval import Embedding, EmbeddingResult, Prepared
from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable


THINKER_TOKENS = ("\n<thi", "nk>Let me", " think.</th", "ink>\n", "\nThe answer", " is 4.")


class FakeBackend:
    """Emits "w0 w1 w2 ..." one word per token. model_path controls it:
    "missing" fails to load; "slow" sleeps 0.2 s while loading and 0.02 s per token;
    "gated" loads only once `load_gate` is set; "crash" fails after two tokens (a backend bug);
    "thinker" reports thinking tags and thinks first, its tags cut across tokens (THINKER_TOKENS);
    "prefill" holds its first token until `prefill_gate` is set, as a long prompt would (and fails
    after 5 s without it)."""

    loads = 0
    closes = 0
    threads: set[str] = set()  # names of the threads generate() ran on
    lock = threading.Lock()
    load_gate = threading.Event()
    prefill_gate = threading.Event()
    n_ctx = 64

    def __init__(self, spec):
        self.spec = spec

    @classmethod
    def reset(cls):
        cls.loads = cls.closes = 0
        cls.threads = set()
        cls.load_gate = threading.Event()
        cls.prefill_gate = threading.Event()

    @classmethod
    def check(cls, spec):
        return ["model file not found: missing"] if spec.model_path == "missing" else []

    @classmethod
    def load(cls, spec):
        if spec.model_path == "missing":
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: model file not found: missing.")
        if spec.model_path == "slow":
            time.sleep(0.2)
        if spec.model_path == "gated" and not cls.load_gate.wait(timeout=60):
            raise ModelUnavailable("the test never opened the load gate")
        with cls.lock:
            cls.loads += 1
        return cls(spec)

    def generate(self, request, should_stop):
        type(self).threads.add(threading.current_thread().name)
        prompt = request.prompt if request.messages is None else " ".join(m.content or "" for m in request.messages)
        prompt_tokens = len(str(prompt).split())
        if prompt_tokens >= self.n_ctx:
            raise ContextLengthExceeded("too long", param="messages" if request.messages else "prompt")
        if self.spec.model_path == "thinker":
            yield Started(prompt_tokens=prompt_tokens, thinking=Thinking("<think>", "</think>"))
            for token in THINKER_TOKENS:
                yield Delta(token)
            yield Finished("stop", prompt_tokens, len(THINKER_TOKENS))
            return
        yield Started(prompt_tokens=prompt_tokens, echo=prompt if request.echo else None)
        if self.spec.model_path == "prefill" and not type(self).prefill_gate.wait(timeout=5):
            raise RuntimeError("the fake's prefill gate was never opened")
        limit = request.sampling.max_tokens or 8
        for i in range(limit):
            if should_stop():
                yield Finished("cancelled", prompt_tokens, i)
                return
            if self.spec.model_path == "slow":
                time.sleep(0.02)
            if self.spec.model_path == "crash" and i == 2:
                raise RuntimeError("the fake backend crashed")
            yield Delta(f"w{i} ")
        yield Finished("length", prompt_tokens, limit)

    def close(self):
        with self.lock:
            type(self).closes += 1


class FakeOptions(EngineOptions):
    """Load options of the fake backend: any change replaces the loaded instance, as for a real one."""

    n_ctx: int = option(64, ge=1, description="Context window of the fake model, in words.")


class FakeEngine(SerialEngine):
    """The fake backend served one request at a time by the real serial adapter."""

    backend = FakeBackend
    kinds = frozenset({"chat"})
    options = FakeOptions


class FakeBatchBackend:
    """Embeds text t as [len(t)]; "bad" inputs fail alone. model_path controls it: "missing" fails
    to load; "slow" sleeps 0.2 s while loading; "gated" holds each forward pass until `gate` is set."""

    gate = threading.Event()
    entered = threading.Event()  # set once a forward pass is running (and held at the gate)
    runs: list[int] = []  # texts per forward pass
    gather_seconds = 0.0  # the engine's gathering window (the real backends' `gather_ms` option)

    def __init__(self, spec):
        self.spec = spec

    @classmethod
    def reset(cls):
        cls.gate = threading.Event()
        cls.entered = threading.Event()
        cls.runs = []
        cls.gather_seconds = 0.0

    @classmethod
    def check(cls, spec):
        return []

    @classmethod
    def load(cls, spec):
        if spec.model_path == "missing":
            raise ModelUnavailable("cannot load: missing")
        if spec.model_path == "slow":
            time.sleep(0.2)
        return cls(spec)

    def prepare(self, request):
        if "bad" in request.inputs:
            raise InvalidRequest("bad input", param="input")
        return Prepared(request, request.return_sparse, [len(t) for t in request.inputs], list(request.inputs))

    def run(self, batch):
        type(self).entered.set()
        if self.spec.model_path == "gated":
            type(self).gate.wait(timeout=30)
        type(self).runs.append(sum(len(p.data) for p in batch))
        return [EmbeddingResult([Embedding(np.array([len(t)], dtype=np.float32)) for t in p.data], 0) for p in batch]

    def close(self):
        pass


class FakeBatchEngine(ForwardPassEngine):
    """The fake embedding backend under the real forward-pass adapter (registered as "fake_batch")."""

    backend = FakeBatchBackend
    kinds = frozenset({"embedding", "rerank"})
