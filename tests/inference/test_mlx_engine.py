"""The MLX engine under the engine contract, driven directly on the real tiny MLX model: continuous
batching (jobs joining and leaving), `n` choices, seeds, abort, failures. The test thread plays the
scheduler's owner thread (`RecordingJob` from the contract's own tests)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from inference.backends import engine_class
from inference.backends.mlx_engine import MlxEngine, MlxOptions
from inference.constraints import ConstraintFailed, JsonSchema
from inference.events import Failed, Started
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import ContextLengthExceeded
from tests.inference.test_engines import RecordingJob, run_until_done
from tests.inference.test_mlx import PERSON


def spec(path, **options) -> ModelSpec:
    return ModelSpec(name="tiny-mlx", backend="mlx", kind="chat", model_path=str(path),
                     load={"n_ctx": 256, "parallel": 4, **options}, defaults={})


@pytest.fixture(scope="module")
def engine(mlx_tiny_path):
    assert engine_class("mlx", "chat") is MlxEngine
    e = MlxEngine.load(spec(mlx_tiny_path))
    yield e
    e.close()


def generation(prompt: str, max_tokens: int, n: int = 1, **sampling) -> GenerationRequest:
    values = {"temperature": 0, "max_tokens": max_tokens, **sampling}
    return GenerationRequest(sampling=resolve_sampling(values, {}), messages=(ChatMessage("user", prompt),), n=n)


def solo(engine, request) -> list[str]:
    job = RecordingJob(request)
    engine.admit(job)
    assert run_until_done(engine, job) == [job]
    return [job.text(i) for i in range(request.n)]


def test_jobs_join_and_leave_a_running_batch_with_their_solo_output(engine):
    requests = [generation(f"Question {i}", 4 + 3 * i) for i in range(6)]
    requests += [generation("A seeded one", 9, temperature=1.0, seed=7), generation("Another", 9, temperature=0.8, seed=8)]
    alone = [solo(engine, r) for r in requests]
    jobs = [RecordingJob(r) for r in requests]
    done: list = []
    for job in jobs[:4]:  # parallel 4: the first four start, the rest join as slots free up
        engine.admit(job)
    assert engine.free_slots() == 0 and engine.active() == 4 and engine.stats().active == 4
    waiting = jobs[4:]
    while engine.active() or waiting:
        while waiting and engine.free_slots():
            engine.admit(waiting.pop(0))
        done += engine.step()
    assert sorted(map(id, done)) == sorted(map(id, jobs))
    assert [[j.text()] for j in jobs] == alone
    for job, request in zip(jobs, requests):
        assert sum(isinstance(e, Started) for e in job.events) == 1
        (finished,) = job.finished()
        assert finished.reason == "length" and finished.completion_tokens == request.sampling.max_tokens
    assert engine.free_slots() == 4 and engine.stats().active == 0


def test_n_choices_take_a_slot_each_and_have_their_own_seeds(engine):
    request = generation("Tell me a story", 8, n=3, temperature=1.0, seed=21)
    job = RecordingJob(request)
    engine.admit(job)
    assert engine.free_slots() == 1
    run_until_done(engine, job)
    texts = [job.text(i) for i in range(3)]
    assert len(set(texts)) == 3
    assert texts == [solo(engine, request.choice(i))[0] for i in range(3)]  # choice i samples with seed + i
    assert sorted(f.index for f in job.finished()) == [0, 1, 2]


def test_abort_ends_every_unfinished_choice_and_frees_the_slots(engine):
    job = RecordingJob(generation("Go on", 100, n=2))
    engine.admit(job)
    for _ in range(5):
        assert engine.step() == []
    engine.abort(job)
    assert engine.active() == 0 and engine.free_slots() == 4
    finished = job.finished()
    assert sorted(f.index for f in finished) == [0, 1]
    assert all(f.reason == "cancelled" and 0 < f.completion_tokens < 100 for f in finished)
    assert engine.step() == []


def test_a_prompt_too_long_fails_at_admission_and_is_returned_once(engine):
    job = RecordingJob(generation("word " * 300, 5))
    engine.admit(job)
    assert isinstance(job.events[-1], Failed) and isinstance(job.events[-1].error, ContextLengthExceeded)
    assert engine.step() == [job] and engine.step() == [] and engine.active() == 0


def test_a_constraint_failure_fails_only_its_own_job(engine, monkeypatch):
    from inference.backends import mlx_constraints

    constraint = JsonSchema(schema=PERSON, strict=True, param="response_format")
    compiled = engine.constraint_compiler.compile(constraint)
    good = RecordingJob(generation("Fine", 6))
    broken = RecordingJob(GenerationRequest(
        sampling=resolve_sampling({"temperature": 0, "max_tokens": 20, "logit_bias": {87: 100}}, {}),
        messages=(ChatMessage("user", "JSON"),), constraint=constraint, compiled=compiled, n=2,
    ))
    monkeypatch.setattr(mlx_constraints.MlxConstraintProcessor, "_bias_cpu", lambda self, ids, logits: logits)
    engine.admit(good)
    engine.admit(broken)
    done = run_until_done(engine, good, broken)
    assert sorted(map(id, done)) == sorted(map(id, [good, broken]))
    assert isinstance(broken.events[-1], Failed) and isinstance(broken.events[-1].error, ConstraintFailed)
    assert good.finished()[0].completion_tokens == 6
    assert engine.free_slots() == 4


def test_constrained_jobs_in_a_batch_are_enforced(engine):
    constraint = JsonSchema(schema=PERSON, strict=True, param="response_format")
    compiled = engine.constraint_compiler.compile(constraint)
    jobs = [RecordingJob(GenerationRequest(
        sampling=resolve_sampling({"temperature": 1.0, "seed": s, "max_tokens": 60}, {}),
        messages=(ChatMessage("user", "JSON"),), constraint=constraint, compiled=compiled,
    )) for s in range(4)]
    for job in jobs:
        engine.admit(job)
    run_until_done(engine, *jobs)
    for job in jobs:
        jsonschema.validate(json.loads(job.text()), PERSON)


def test_options(mlx_tiny_path, settings):
    settings.MLX_PARALLEL = 3
    from inference.options import options_resolve

    assert options_resolve(MlxOptions, {}) == {
        "n_ctx": settings.N_CTX, "parallel": 3, "prompt_reuse": True, "prompt_cache_tokens": 8192, "prompt_cache_entries": 32,
    }
    assert MlxEngine.check(spec(mlx_tiny_path)) == []
    assert "not found" in MlxEngine.check(spec(mlx_tiny_path + "-missing"))[0]
