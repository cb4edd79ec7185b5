"""The engine contract driven directly (admit, step, abort, stats, close) on the real models:
`SerialEngine` over llama.cpp with the bundled SmolLM2, `ForwardPassEngine` over MiniLM.

The test thread plays the scheduler's owner thread; `RecordingJob` is the part of a job an engine
sees (request, cancelled, emit) and records what the engine emitted.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference.backends import engine_class
from inference.engines.serial import SerialEngine
from inference.events import Delta, Failed, Finished, Result, Started
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from inference.retrieval import EmbeddingRequest
from llmservice.errors import ContextLengthExceeded
from tests.retrieval_models import retrieval_spec

EOG_BAN = {0: -100.0, 2: -100.0, 4: -100.0}  # SmolLM2's end-of-generation tokens: run to max_tokens
STEP_LIMIT = 10_000  # a bound on steps, so a broken engine fails the test instead of hanging it


class RecordingJob:
    def __init__(self, request):
        self.request = request
        self.cancelled = threading.Event()
        self.events: list = []

    def emit(self, event):
        self.events.append(event)

    def text(self, index: int = 0) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Delta) and e.index == index)

    def finished(self) -> list[Finished]:
        return [e for e in self.events if isinstance(e, Finished)]


def run_until_done(engine, *jobs) -> list:
    done: list = []
    for _ in range(STEP_LIMIT):
        done += engine.step()
        if engine.active() == 0:
            return done
    raise AssertionError(f"the engine still had {engine.active()} active job(s) after {STEP_LIMIT} steps")


def generation(prompt: str, max_tokens: int, n: int = 1) -> GenerationRequest:
    sampling = resolve_sampling({"temperature": 0, "max_tokens": max_tokens, "logit_bias": EOG_BAN}, {})
    return GenerationRequest(sampling=sampling, prompt=prompt, n=n)


@pytest.fixture(scope="module")
def llama(smollm2_path):
    spec = ModelSpec(name="light", backend="llamacpp_serial", kind="chat", model_path=smollm2_path,
                     load={"n_ctx": 256, "n_threads": 2}, defaults={})
    engine_cls = engine_class("llamacpp_serial", "chat")
    assert issubclass(engine_cls, SerialEngine) and "chat" in engine_cls.kinds
    engine = engine_cls.load(spec)
    yield engine
    engine.close()


def test_serial_engine_serves_one_job_a_token_per_step_with_the_backends_own_output(llama):
    request = generation("Count: 1, 2, 3,", 6)
    direct = list(llama.model.generate(request.choice(0), lambda: False))  # the backend's generator, unadapted
    job = RecordingJob(request)
    assert (llama.free_slots(), llama.active()) == (1, 0)
    llama.admit(job)
    assert (llama.free_slots(), llama.active(), llama.stats().slots) == (0, 1, 1)
    steps = 0
    while not (done := llama.step()):
        steps += 1
        assert steps < STEP_LIMIT
    assert done == [job] and (llama.free_slots(), llama.active()) == (1, 0)
    assert steps == 6  # one step per token (the first one with Started), then one with the Finished
    assert job.events == direct and isinstance(job.events[0], Started)
    assert job.finished() == [Finished("length", direct[0].prompt_tokens, 6)]


def test_serial_engine_runs_n_choices_one_after_another_with_their_index(llama):
    job = RecordingJob(generation("Colours: red, green,", 4, n=3))
    llama.admit(job)
    assert run_until_done(llama) == [job]
    assert sum(isinstance(e, Started) for e in job.events) == 1
    assert [(f.index, f.reason, f.completion_tokens) for f in job.finished()] == [(0, "length", 4), (1, "length", 4), (2, "length", 4)]
    assert job.text(0) == job.text(1) == job.text(2) != ""  # greedy: the same text for every choice


def test_serial_engine_abort_ends_every_choice_and_frees_the_slot_for_a_clean_next_job(llama):
    reference = RecordingJob(generation("Count: 1, 2, 3,", 5))
    llama.admit(reference)
    run_until_done(llama)

    job = RecordingJob(generation("Count: 1, 2, 3,", 200, n=2))
    llama.admit(job)
    for _ in range(3):
        assert llama.step() == []
    job.cancelled.set()
    llama.abort(job)
    assert (llama.free_slots(), llama.active()) == (1, 0)
    finished = job.finished()
    assert [(f.index, f.reason) for f in finished] == [(0, "cancelled"), (1, "cancelled")]
    assert 1 <= finished[0].completion_tokens < 200 and finished[1].completion_tokens == 0
    assert llama.step() == []  # nothing left: an aborted job is never returned by a step

    again = RecordingJob(generation("Count: 1, 2, 3,", 5))
    llama.admit(again)
    assert run_until_done(llama) == [again]
    assert again.events == reference.events  # the abort left nothing behind in the model


def test_serial_engine_a_request_the_backend_refuses_fails_and_is_done(llama):
    job = RecordingJob(generation("word " * 400, 4))  # over the 256-token context
    llama.admit(job)
    assert run_until_done(llama) == [job]
    assert len(job.events) == 1 and isinstance(job.events[0], Failed)
    assert isinstance(job.events[0].error, ContextLengthExceeded)
    assert llama.free_slots() == 1


def test_forward_pass_engine_groups_admitted_jobs_into_one_pass_and_fails_a_bad_one_alone(minilm_path):
    spec = retrieval_spec("embed", "embedding", "sentence_transformers", minilm_path)
    engine = engine_class("sentence_transformers", "embedding").load(spec)
    try:
        texts = ["A cat sleeps on the sofa.", "Interest rates rose.", "Bread is baked in an oven."]
        jobs = [RecordingJob(EmbeddingRequest(inputs=(t,))) for t in texts]
        bad = RecordingJob(EmbeddingRequest(inputs=(" ".join(["word"] * 400),)))  # over MiniLM's 256 tokens
        gone = RecordingJob(EmbeddingRequest(inputs=("never computed",)))
        for job in [*jobs, bad, gone]:
            engine.admit(job)
        engine.abort(gone)  # its client left before the pass: it leaves the batch
        assert engine.active() == 4
        done = engine.step()
        assert set(done) == {*jobs, bad} and engine.active() == 0 and engine.stats().batches == 1
        assert isinstance(bad.events[0], Failed) and isinstance(bad.events[0].error, ContextLengthExceeded) and gone.events == []
        alone = RecordingJob(EmbeddingRequest(inputs=(texts[1],)))
        engine.admit(alone)
        engine.step()
        together, single = jobs[1].events[0], alone.events[0]
        assert isinstance(together, Result) and isinstance(single, Result)
        assert np.allclose(together.value.embeddings[0].dense, single.value.embeddings[0].dense, atol=1e-5)
        assert engine.stats().batches == 2
    finally:
        engine.close()
