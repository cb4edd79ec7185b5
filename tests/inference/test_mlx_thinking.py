"""Reasoning templates on the real MLX backend (the tiny mlx-lm llama with a reasoning family's chat
template string, as tests/inference/test_thinking.py does for llama.cpp): Started.thinking reports
the template's tags, reasoning_effort sets its switch or is refused by name."""

import pytest

from inference.backends.mlx import MlxBackend
from inference.events import Thinking
from inference.thinking import NO_SWITCH, thinking_switch, thinking_tags
from llmservice.errors import UnsupportedParameter

from .test_mlx import make_spec
from .test_thinking import started as started_events
from .tool_templates import DEEPSEEK_R1, QWEN3


@pytest.fixture(scope="module")
def backend(mlx_tiny_path):
    b = MlxBackend.load(make_spec(mlx_tiny_path))
    yield b
    b.close()


def hf_tokenizer(backend):
    return getattr(backend._tokenizer, "_tokenizer", backend._tokenizer)


@pytest.fixture
def restore(backend):
    saved = hf_tokenizer(backend).chat_template, backend.thinking_tags, backend.thinking_switch
    yield
    hf_tokenizer(backend).chat_template, backend.thinking_tags, backend.thinking_switch = saved


def with_template(backend, template):
    """The backend as it loads a model directory carrying `template` (as __init__ reads it)."""
    hf_tokenizer(backend).chat_template = template
    backend.thinking_tags, backend.thinking_switch = thinking_tags(template), thinking_switch(template)


def started(backend, thinking=None):
    return started_events(backend, thinking)[0]


def test_a_qwen3_template_reports_its_tags_and_turns_thinking_off(backend, restore):
    with_template(backend, QWEN3)
    # Unset, mlx-lm's TokenizerWrapper passes enable_thinking=<the vocabulary has <think> tokens>
    # (False for this tokenizer); reasoning_effort sets it explicitly.
    on = started(backend, thinking=True)
    off = started(backend, thinking=False)
    assert on.thinking == Thinking("<think>", "</think>", inside=False)
    assert off.thinking == Thinking("<think>", "</think>", inside=False)
    assert off.prompt_tokens > on.prompt_tokens  # the empty <think></think> block went into the prompt


def test_a_deepseek_r1_template_starts_inside_thinking_and_refuses_reasoning_effort(backend, restore):
    with_template(backend, DEEPSEEK_R1)
    assert started(backend).thinking == Thinking("<think>", "</think>", inside=True)
    with pytest.raises(UnsupportedParameter) as refused:
        started(backend, thinking=False)
    assert str(refused.value) == NO_SWITCH and refused.value.param == "reasoning_effort"


def test_smollm2s_template_knows_no_thinking(backend):
    assert started(backend).thinking is None
    with pytest.raises(UnsupportedParameter):
        started(backend, thinking=True)
