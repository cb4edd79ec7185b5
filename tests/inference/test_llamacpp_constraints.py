"""The llama.cpp backend enforces constraints with the real SmolLM2 model, in its own decode loop."""

from __future__ import annotations

import json

import jsonschema
import pytest

from inference.constraints import AnyJsonObject, Choice, ConstraintCompiler, JsonSchema, ToolCalls, ToolSpec
from inference.constraints.tool_formats import HERMES
from inference.events import Delta, Finished, Started
from inference.params import ChatMessage, GenerationRequest, ModelSpec, SamplingParams
from llmservice.errors import InternalError

from .tool_templates import QWEN

TREE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {"label": {"type": "string", "maxLength": 12}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2}},
            "required": ["label"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/Node",
}
SEARCH = ToolSpec("search", "Search the web", {"type": "object", "properties": {"q": {"type": "string", "maxLength": 30}}, "required": ["q"]})
PING = ToolSpec("ping", "Check that the network is up", {"type": "object", "properties": {}})


@pytest.fixture(scope="module")
def backend():
    from inference.backends.llamacpp import LlamaCppBackend
    from inference.bundled import smollm2_gguf

    spec = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=smollm2_gguf(), load={"n_threads": 2}, defaults={})
    loaded = LlamaCppBackend.load(spec)
    yield loaded
    loaded.close()


def run(backend, content, constraint, max_tokens=200, compiler=None):
    compiler = compiler or backend.constraint_compiler
    request = GenerationRequest(
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
        messages=(ChatMessage(role="user", content=content),),
        constraint=constraint,
        compiled=compiler.compile(constraint) if constraint else None,
    )
    events = list(backend.generate(request, lambda: False))
    text = "".join(e.text for e in events if isinstance(e, Delta))
    return text, next(e for e in events if isinstance(e, Finished)), next(e for e in events if isinstance(e, Started))


def test_the_loaded_model_has_a_compiler_and_a_tool_format(backend):
    assert isinstance(backend.constraint_compiler, ConstraintCompiler)
    assert backend.tool_format.name == "generic"  # SmolLM2's template knows no tools


def test_recursive_schema_is_followed(backend):
    text, finished, _ = run(backend, "A small family tree.", JsonSchema(TREE, strict=True, param="x"), 300)
    assert finished.reason == "stop"
    jsonschema.validate(json.loads(text), TREE)


def test_a_complete_output_ends_the_answer_without_waiting_for_the_model(backend):
    text, finished, _ = run(backend, "Is Paris in France?", Choice(("yes", "no"), "guided_choice"))
    assert text in ("yes", "no") and finished.reason == "stop"


def test_a_cut_answer_says_length(backend):
    _, finished, _ = run(backend, "A tree.", JsonSchema(TREE, strict=False, param="x"), 4)
    assert finished.reason == "length" and finished.completion_tokens == 4


def test_relaxed_keywords_are_reported_on_started(backend):
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "uniqueItems": True, "maxItems": 3}
    text, _, started = run(backend, "Three digits.", JsonSchema(schema, strict=False, param="x"))
    assert started.relaxed == ("uniqueItems at #",)
    assert all(0 <= n <= 9 for n in json.loads(text))


def test_required_tool_call_is_well_formed(backend):
    calls = ToolCalls((SEARCH,), "required", parallel=False)
    text, finished, started = run(backend, "Find the height of the Eiffel tower.", calls)
    assert started.tool_format == "generic" and finished.reason == "stop"
    answer = backend.tool_format.parse(text, "required")
    assert len(answer.calls) == 1 and answer.calls[0][0] == "search"
    jsonschema.validate(json.loads(answer.calls[0][1]), SEARCH.parameters)


def test_a_repeated_call_ends_the_answer(backend):
    """ping takes no arguments, so any second call repeats the first: the answer stops at one."""
    text, finished, _ = run(backend, "Ping the network, then ping it again, and again.", ToolCalls((PING,), "required", parallel=True), 120)
    assert backend.tool_format.parse(text, "required").calls == [("ping", "{}")]
    assert finished.reason == "stop" and text.count("<tool_call>") == 1


def test_a_native_format_end_to_end_with_real_weights(backend):
    """SmolLM2 driven through a Hermes/Qwen template and the Hermes format: prompt, grammar, parser."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    prompts = backend._prompts  # the backend's chat template and tool format (llamacpp_common.PromptBuilder)
    saved = prompts.tool_format, prompts._formatter
    hermes = ConstraintCompiler(backend.constraint_compiler.tokenizer, n_vocab=backend.constraint_compiler.n_vocab,
                                tool_format=HERMES, limits=backend.constraint_compiler.limits)
    prompts.tool_format = HERMES
    prompts._formatter = Jinja2ChatFormatter(template=QWEN, eos_token="<|im_end|>", bos_token="", stop_token_ids=[2])
    try:
        text, finished, started = run(backend, "Find the height of the Eiffel tower.", ToolCalls((SEARCH,), "required"), compiler=hermes)
    finally:
        prompts.tool_format, prompts._formatter = saved
    assert started.tool_format == "hermes" and finished.reason == "stop"
    assert text.startswith("<tool_call>\n{") and text.rstrip().endswith("}\n</tool_call>")
    (call,) = HERMES.parse(text, "required").calls
    jsonschema.validate(json.loads(call[1]), SEARCH.parameters)


def test_an_unprepared_constraint_is_a_programming_error(backend):
    request = GenerationRequest(sampling=SamplingParams(max_tokens=4), prompt="x", constraint=AnyJsonObject("response_format"))
    with pytest.raises(InternalError):
        list(backend.generate(request, lambda: False))


def test_logprobs_survive_the_constraint(backend):
    compiled = backend.constraint_compiler.compile(Choice(("yes", "no"), "c"))
    request = GenerationRequest(
        sampling=SamplingParams(temperature=0, max_tokens=5, logprobs=True, top_logprobs=2),
        messages=(ChatMessage(role="user", content="Yes or no?"),), constraint=Choice(("yes", "no"), "c"), compiled=compiled,
    )
    deltas = [e for e in backend.generate(request, lambda: False) if isinstance(e, Delta)]
    entries = [lp for d in deltas for lp in d.logprobs or []]
    assert "".join(e.token for e in entries) == "".join(d.text for d in deltas)


def test_a_constraint_failing_mid_answer_is_its_400(backend):
    """The lexer runs out of states after a few tokens: the request fails; never a cut "stop"."""
    from inference.constraints import CompileLimits, ConstraintFailed, Regex

    c = backend.constraint_compiler
    tight = ConstraintCompiler(c.tokenizer, n_vocab=c.n_vocab, tool_format=c.tool_format, limits=CompileLimits(max_lexer_states=50))
    constraint = Regex("(a|b|c|d)*a(a|b|c|d){12}", "guided_regex")
    request = GenerationRequest(sampling=SamplingParams(temperature=0, max_tokens=200), prompt="Letters: ",
                                constraint=constraint, compiled=tight.compile(constraint))
    with pytest.raises(ConstraintFailed, match="too many states"):
        list(backend.generate(request, lambda: False))
