"""Tool-call formats: chosen from the chat template, prompted through it, constrained and parsed.

Each native format is tested with a template of its family (tests/inference/tool_templates.py)
and SmolLM2's real tokenizer for the grammar; no other weights are needed."""

from __future__ import annotations

import json

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llguidance import LLTokenizer, TokenizerWrapper

from inference.constraints import (
    ArgumentsPiece,
    CallStart,
    CompileLimits,
    ConstraintCompiler,
    DuplicateCallGuard,
    TextPiece,
    ToolCalls,
    ToolSpec,
    detect_tool_format,
)
from inference.constraints.tool_formats import GENERIC, HERMES, LLAMA3, MISTRAL
from inference.params import ChatMessage

from .tool_templates import CHATML, LLAMA31, MISTRAL as MISTRAL_TEMPLATE, QWEN

WEATHER = ToolSpec(
    "get_weather", "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]},
)
ADD = ToolSpec(
    "add", None,
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": -9, "maximum": 9}, "b": {"type": "integer"}}, "required": ["a", "b"]},
)
CASES = {  # format, its template, and an answer calling get_weather written the way that family writes it
    "hermes": (HERMES, QWEN, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    "llama3": (LLAMA3, LLAMA31, '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    "mistral": (MISTRAL, MISTRAL_TEMPLATE, '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]'),
    "generic": (GENERIC, CHATML, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'),
}
HISTORY = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Weather in Paris?"),
    ChatMessage(
        role="assistant", content="",
        extra={"tool_calls": [{"id": "call_0123456789abcdef01234567", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    ),
    ChatMessage(role="tool", content="Sunny, 21 C", extra={"tool_call_id": "call_0123456789abcdef01234567"}),
    ChatMessage(role="user", content="And in Rome?"),
]


def compiler_for(fmt, tokenizer, n_vocab):
    return ConstraintCompiler(tokenizer, n_vocab=n_vocab, tool_format=fmt, limits=CompileLimits())


def follows(compiled, tokens) -> bool:
    matcher = compiled.matcher()
    return all(matcher.consume(t) for t in tokens) and matcher.is_accepting()


def render(fmt, template, calls):
    messages, tools = fmt.render(HISTORY, calls)
    formatter = Jinja2ChatFormatter(template=template, eos_token="</s>", bos_token="<s>")
    return formatter(messages=messages, tools=tools).prompt


@pytest.mark.parametrize("name", list(CASES))
def test_the_template_picks_its_format(name):
    fmt, template, _ = CASES[name]
    assert detect_tool_format(template) is fmt


def test_templates_without_tools_get_the_generic_format():
    assert detect_tool_format(None) is GENERIC and detect_tool_format(CHATML) is GENERIC


@pytest.mark.parametrize("name", ["hermes", "llama3", "mistral"])
def test_native_formats_prompt_through_the_models_own_template(name):
    fmt, template, _ = CASES[name]
    prompt = render(fmt, template, ToolCalls((WEATHER, ADD), "auto"))
    assert '"name": "get_weather"' in prompt and '"maxLength": 20' in prompt  # the tools section
    assert '"city": "Paris"' in prompt and "Sunny, 21 C" in prompt  # the tool turns, natively
    assert "<tool_call>{" not in prompt.replace("<tool_call>\n{", "")  # not the generic text form


def test_history_calls_are_rendered_in_the_syntax_the_grammar_allows(smollm2_tokenizer, smollm2_vocab):
    for name in ("hermes", "llama3"):
        fmt, template, answer = CASES[name]
        assert answer in render(fmt, template, ToolCalls((WEATHER,), "auto")), name
    mistral = render(MISTRAL, MISTRAL_TEMPLATE, None)
    assert '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "' in mistral


def test_mistral_call_ids_are_mapped_to_nine_characters_consistently():
    messages, _ = MISTRAL.render(HISTORY, None)
    call_id = messages[2]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum() and messages[3]["tool_call_id"] == call_id


def test_generic_format_writes_tools_and_tool_turns_as_text():
    messages, tools = GENERIC.render(HISTORY, ToolCalls((WEATHER,), "auto"))
    assert tools is None
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.") and "get_weather" in messages[0]["content"]
    assert messages[2]["content"] == CASES["generic"][2] and "tool_calls" not in messages[2]
    assert messages[3] == {"role": "user", "content": "<tool_response>Sunny, 21 C</tool_response>"}


@pytest.mark.parametrize("name", list(CASES))
def test_each_formats_grammar_accepts_its_calls_and_its_parser_reads_them(name, smollm2_tokenizer, smollm2_vocab):
    fmt, _, answer = CASES[name]
    compiler = compiler_for(fmt, smollm2_tokenizer, smollm2_vocab.n_vocab())
    compiled = compiler.compile(ToolCalls((WEATHER, ADD), "required"))
    assert follows(compiled, smollm2_tokenizer.tokenize_str(answer))
    assert not follows(compiled, smollm2_tokenizer.tokenize_str(answer.replace("Paris", "P" * 21)))  # maxLength 20
    assert fmt.parse(answer, "required").calls == [("get_weather", '{"city": "Paris"}')]
    for size in (1, 2, 5):
        parser, pieces = fmt.parser("auto"), []
        for i in range(0, len(answer), size):
            pieces += parser.feed(answer[i : i + size])
        assert [p.name for p in pieces if isinstance(p, CallStart)] == ["get_weather"]
        assert "".join(p.text for p in pieces if isinstance(p, ArgumentsPiece)) == '{"city": "Paris"}'
        assert not any(isinstance(p, TextPiece) for p in pieces)


@pytest.mark.parametrize("name", list(CASES))
def test_auto_allows_plain_text_that_cannot_be_mistaken_for_a_call(name, smollm2_tokenizer, smollm2_vocab):
    fmt, _, _ = CASES[name]
    compiled = compiler_for(fmt, smollm2_tokenizer, smollm2_vocab.n_vocab()).compile(ToolCalls((WEATHER,), "auto"))
    assert follows(compiled, smollm2_tokenizer.tokenize_str("It is sunny."))
    assert not follows(compiled, smollm2_tokenizer.tokenize_str(" It is sunny."))
    assert fmt.parse("It is sunny.", "auto").content == "It is sunny."


def two_calls(fmt) -> str:
    s = fmt.syntax
    call = lambda n: s.open + json.dumps({"name": "add", s.args_key: {"a": n, "b": 1}}) + s.close  # noqa: E731
    return s.start + call(1) + s.separator + call(2) + s.end


@pytest.mark.parametrize("name", ["hermes", "mistral", "generic"])
def test_parallel_calls_and_exactly_one_for_a_named_choice(name, smollm2_tokenizer, smollm2_vocab):
    fmt, _, _ = CASES[name]
    compiler = compiler_for(fmt, smollm2_tokenizer, smollm2_vocab.n_vocab())
    tokens = smollm2_tokenizer.tokenize_str(two_calls(fmt))
    assert follows(compiler.compile(ToolCalls((WEATHER, ADD), "required", parallel=True)), tokens)
    assert not follows(compiler.compile(ToolCalls((WEATHER, ADD), "required", parallel=False)), tokens)
    assert not follows(compiler.compile(ToolCalls((WEATHER, ADD), "required", only="add", parallel=True)), tokens)
    assert [n for n, _ in fmt.parse(two_calls(fmt), "required").calls] == ["add", "add"]


def test_llama3_takes_one_call_per_turn(smollm2_tokenizer, smollm2_vocab):
    compiler = compiler_for(LLAMA3, smollm2_tokenizer, smollm2_vocab.n_vocab())
    assert not follows(compiler.compile(ToolCalls((ADD,), "required", parallel=True)), smollm2_tokenizer.tokenize_str(two_calls(LLAMA3)))


@pytest.mark.parametrize("name", list(CASES))
def test_a_repeated_call_ends_the_answer_and_is_dropped(name):
    fmt = CASES[name][0]
    s = fmt.syntax
    call = s.open + json.dumps({"name": "add", s.args_key: {"a": 1, "b": 1}}) + s.close
    answer = s.start + call + s.separator + call + s.end
    for size in (1, 4, len(answer)):
        guard, sent = DuplicateCallGuard(s, "required"), []
        for i in range(0, len(answer), size):
            sent += guard.feed(answer[i : i + size], [i])
            if guard.stopped:
                break
        sent += guard.flush()
        text = "".join(t for t, _ in sent)
        assert guard.stopped and fmt.parse(text, "required").calls == [("add", '{"a": 1, "b": 1}')], (size, text)
        assert text.count('"add"') == 1


def test_different_calls_pass_the_guard_whole():
    answer = two_calls(GENERIC)
    guard = DuplicateCallGuard(GENERIC.syntax, "required")
    sent = [p for i in range(len(answer)) for p in guard.feed(answer[i], [i])] + guard.flush()
    assert "".join(t for t, _ in sent) == answer and not guard.stopped
    assert [a for _, a in sent for a in a] == list(range(len(answer)))  # every token's logprobs, in order


# --- special tokens -------------------------------------------------------------------------------
class _SpecialTokens:
    """A byte-level tokenizer whose vocabulary has the tool markers as special tokens."""

    MARKERS = {"<tool_call>": 256, "</tool_call>": 257, "[TOOL_CALLS]": 258}

    def __init__(self):
        self.tokens = [bytes([i]) for i in range(256)] + [b"\xff" + m.encode() for m in self.MARKERS] + [b"\xff</s>"]
        self.eos_token_id = 259
        self.bos_token_id = None
        self.special_token_ids = [256, 257, 258, 259]

    def __call__(self, text):
        text = text.decode() if isinstance(text, bytes) else text
        out: list[int] = []
        while text:
            marker = next((m for m in self.MARKERS if text.startswith(m)), None)
            if marker:
                out.append(self.MARKERS[marker])
                text = text[len(marker):]
            else:
                out.extend(text[0].encode())
                text = text[1:]
        return out


@pytest.mark.parametrize("name", ["hermes", "mistral"])
def test_markers_that_are_special_tokens_are_generated_as_those_tokens(name):
    fmt, _, answer = CASES[name]
    fake = _SpecialTokens()
    compiler = compiler_for(fmt, LLTokenizer(TokenizerWrapper(fake)), len(fake.tokens))
    compiled = compiler.compile(ToolCalls((WEATHER,), "required"))
    assert compiled.preserved_tokens == {fake.MARKERS[m] for m in fmt.markers}
    assert follows(compiled, fake(answer))  # the marker as its one special token
    spelled = [b for t in fake(answer) for b in (fake.tokens[t][1:] if t >= 256 else [t])]
    assert not follows(compiled, spelled)  # not spelled out in plain bytes
