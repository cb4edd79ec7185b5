"""The manager's prepare step: a request's constraint is compiled for the loaded model before the
job is queued, off the event loop and off the model's owner thread; a failure never reaches the
model. Runs the fake backend (tests/fakes.py) with a fake compiler, named as such."""

from __future__ import annotations

import threading
from typing import NamedTuple

import pytest

from inference.constraints import CompileLimits, Regex
from inference.events import Started
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import InvalidRequest, UnsupportedParameter
from inference.engines.serial import SerialEngine
from tests.fakes import FakeBackend

REFUSED = "fake compiler refuses this"


class Compiled(NamedTuple):
    pattern: str
    relaxed: tuple = ()


class FakeCompiler:
    """Records where it ran; refuses the pattern "bad"."""

    limits = CompileLimits()

    def __init__(self):
        self.threads: list[str] = []

    def compile(self, constraint):
        self.threads.append(threading.current_thread().name)
        if constraint.pattern == "bad":
            raise InvalidRequest(REFUSED, param=constraint.param)
        return Compiled(constraint.pattern)


class CompilingFakeBackend(FakeBackend):
    compiler = FakeCompiler()
    seen: list = []

    @property
    def constraint_compiler(self):
        return self.compiler

    def generate(self, request, should_stop):
        type(self).seen.append(request.compiled)
        yield from super().generate(request, should_stop)


class CompilingFakeEngine(SerialEngine):
    """The compiling fake backend under the real serial adapter."""

    backend = CompilingFakeBackend


@pytest.fixture(autouse=True)
def _register(settings):
    settings.INFERENCE_BACKENDS = {**settings.INFERENCE_BACKENDS, "compiling-fake": "tests.inference.test_manager_prepare.CompilingFakeEngine"}
    CompilingFakeBackend.compiler = FakeCompiler()
    CompilingFakeBackend.seen = []


def spec(backend="compiling-fake", path="slow"):
    return ModelSpec(name="prep", backend=backend, kind="chat", model_path=path, load={}, defaults={})


def request(pattern):
    return GenerationRequest(sampling=resolve_sampling({"max_tokens": 2}, {}), prompt="hi", constraint=Regex(pattern, "guided_regex"))


async def test_the_constraint_is_compiled_off_the_loop_and_the_model_thread_before_queueing(manager):
    events = [e async for e in manager.generate(spec(), request("a+"))]
    assert isinstance(events[0], Started)
    assert CompilingFakeBackend.seen == [Compiled("a+")]  # the job carried the compiled form
    (thread,) = CompilingFakeBackend.compiler.threads
    assert thread.startswith("constraint-compile") and thread != threading.current_thread().name


async def test_a_constraint_that_cannot_compile_is_a_400_and_never_reaches_the_model(manager):
    with pytest.raises(InvalidRequest, match=REFUSED):
        [e async for e in manager.generate(spec(), request("bad"))]
    assert CompilingFakeBackend.seen == []
    assert manager.status()["prep"].requests == 0  # nothing was queued


async def test_a_backend_without_a_compiler_refuses_constraints_by_param(manager):
    with pytest.raises(UnsupportedParameter) as caught:
        [e async for e in manager.generate(spec(backend="fake", path="fake.bin"), request("a+"))]
    assert caught.value.param == "guided_regex"


async def test_unconstrained_requests_skip_the_step(manager):
    plain = GenerationRequest(sampling=resolve_sampling({"max_tokens": 2}, {}), prompt="hi")
    [e async for e in manager.generate(spec(), plain)]
    assert CompilingFakeBackend.compiler.threads == [] and CompilingFakeBackend.seen == [None]
