"""Reasoning templates on the real llama.cpp backend (SmolLM2 weights, a reasoning family's chat
template string: no reasoning weights needed) and the detection of tags and switches."""

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from inference.events import Started, Thinking
from inference.params import ChatMessage, GenerationRequest, SamplingParams
from inference.thinking import NO_SWITCH, thinking_state, thinking_switch, thinking_tags
from llmservice.errors import UnsupportedParameter

from .engine_driver import solo
from .test_llamacpp_batched import engine  # noqa: F401 - the batched engine on SmolLM2 (module fixture)
from .test_llamacpp_constraints import backend  # noqa: F401 - the loaded SmolLM2 (module fixture)
from .tool_templates import DEEPSEEK_R1, QWEN, QWEN3


def test_tags_and_switch_come_from_the_template():
    assert thinking_tags(QWEN3) == ("<think>", "</think>") and thinking_switch(QWEN3) == "enable_thinking"
    assert thinking_tags(DEEPSEEK_R1) == ("<think>", "</think>") and thinking_switch(DEEPSEEK_R1) is None
    assert thinking_tags(QWEN) is None and thinking_switch(QWEN) is None
    assert thinking_state(None, "x") is None
    assert thinking_state(("<think>", "</think>"), "a<think>\n") == Thinking("<think>", "</think>", inside=True)
    assert thinking_state(("<think>", "</think>"), "a<think>\n\n</think>\n\n").inside is False


def with_template(backend, template):
    """The backend as it loads a GGUF carrying `template` (as its PromptBuilder reads it)."""
    prompts = backend._prompts
    prompts._formatter = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="", stop_token_ids=[2])
    prompts.thinking_tags, prompts.thinking_switch = thinking_tags(template), thinking_switch(template)


def started(backend, thinking=None):
    events = list(backend.generate(question(thinking), lambda: False))
    assert isinstance(events[0], Started)
    return events[0], events


def keep_template(prompts):
    """Put a PromptBuilder's template back after a test swapped it."""
    saved = prompts._formatter, prompts.thinking_tags, prompts.thinking_switch
    yield
    prompts._formatter, prompts.thinking_tags, prompts.thinking_switch = saved


def question(thinking=None) -> GenerationRequest:
    return GenerationRequest(sampling=SamplingParams(temperature=0, max_tokens=2),
                             messages=(ChatMessage(role="user", content="What is 2+2?"),), thinking=thinking)


@pytest.fixture
def batched_restore(engine):
    yield from keep_template(engine._prompts)


def batched_started(engine, thinking=None):
    """The batched engine's Started for the same request (its PromptBuilder is the serial backend's code)."""
    job = solo(engine, question(thinking))
    if job.failed is not None:
        raise job.failed
    return job.started


def test_the_batched_engine_reports_thinking_as_the_serial_backend_does(engine, batched_restore):
    with_template(engine, QWEN3)
    on, off = batched_started(engine), batched_started(engine, thinking=False)
    assert on.thinking == off.thinking == Thinking("<think>", "</think>", inside=False)
    assert off.prompt_tokens > on.prompt_tokens
    with_template(engine, DEEPSEEK_R1)
    assert batched_started(engine).thinking == Thinking("<think>", "</think>", inside=True)
    with pytest.raises(UnsupportedParameter) as refused:
        batched_started(engine, thinking=False)
    assert str(refused.value) == NO_SWITCH and refused.value.param == "reasoning_effort"


@pytest.fixture
def restore(backend):
    yield from keep_template(backend._prompts)


def test_a_qwen3_template_reports_its_tags_and_turns_thinking_off(backend, restore):
    with_template(backend, QWEN3)
    on, _ = started(backend)
    off, _ = started(backend, thinking=False)
    assert on.thinking == Thinking("<think>", "</think>", inside=False)
    assert off.thinking == Thinking("<think>", "</think>", inside=False)
    assert off.prompt_tokens > on.prompt_tokens  # the empty <think></think> block went into the prompt
    explicit_on, _ = started(backend, thinking=True)
    assert explicit_on.prompt_tokens == on.prompt_tokens


def test_a_deepseek_r1_template_starts_the_answer_inside_thinking(backend, restore):
    with_template(backend, DEEPSEEK_R1)
    first, _ = started(backend)
    assert first.thinking == Thinking("<think>", "</think>", inside=True)


def test_a_template_without_a_switch_refuses_reasoning_effort(backend, restore):
    with_template(backend, DEEPSEEK_R1)
    with pytest.raises(UnsupportedParameter) as refused:
        started(backend, thinking=False)
    assert str(refused.value) == NO_SWITCH and refused.value.param == "reasoning_effort"


def test_the_bundled_model_knows_no_thinking(backend):
    first, _ = started(backend)
    assert first.thinking is None
    with pytest.raises(UnsupportedParameter):
        started(backend, thinking=True)
