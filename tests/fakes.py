"""A fake backend, for testing the manager's queueing and the HTTP layer without a model.

Tests that claim a real backend works use the real one (tests/inference/test_llamacpp.py, e2e).
"""

from __future__ import annotations

import threading
import time

from inference.events import Delta, Finished, Started
from llmservice.errors import ContextLengthExceeded, ModelUnavailable


class FakeBackend:
    """Emits "w0 w1 w2 ..." one word per token. model_path controls it:
    "missing" fails to load; "slow" sleeps 0.2 s while loading and 0.02 s per token;
    "gated" loads only once `load_gate` is set; "crash" fails after two tokens (a backend bug)."""

    loads = 0
    closes = 0
    threads: set[str] = set()  # names of the threads generate() ran on
    lock = threading.Lock()
    load_gate = threading.Event()
    n_ctx = 64

    def __init__(self, spec):
        self.spec = spec

    @classmethod
    def reset(cls):
        cls.loads = cls.closes = 0
        cls.threads = set()
        cls.load_gate = threading.Event()

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
        yield Started(prompt_tokens=prompt_tokens, echo=prompt if request.echo else None)
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
