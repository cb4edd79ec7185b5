"""The tool-call wire format: prompt, grammar and the incremental parser."""

from __future__ import annotations

import json

import pytest

from inference.params import ChatMessage, ToolSpec, ToolUse
from inference.tools import ArgumentsPiece, CallStart, TextPiece, ToolCallParser, parse_answer, tool_gbnf, tool_messages

WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
ITEMS = ToolSpec(
    "order",
    None,
    {"$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}}, "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}},
)
ANSWER = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n<tool_call>{"name":"order","arguments":{"items":[{"sku":"a}"}]}}</tool_call>'


def test_whole_answer_parses_into_calls():
    answer = parse_answer(ANSWER, "required")
    assert answer.content is None
    assert [(n, json.loads(a)) for n, a in answer.calls] == [("get_weather", {"city": "Paris"}), ("order", {"items": [{"sku": "a}"}]})]


def test_auto_text_answer_is_content():
    assert parse_answer("Hello there", "auto").content == "Hello there"


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_incremental_parse_matches_whole_parse_in_any_pieces(size):
    parser = ToolCallParser("auto")
    pieces = []
    for i in range(0, len(ANSWER), size):
        pieces.extend(parser.feed(ANSWER[i : i + size]))
    starts = [p for p in pieces if isinstance(p, CallStart)]
    assert [s.name for s in starts] == ["get_weather", "order"]
    args = ["".join(p.text for p in pieces if isinstance(p, ArgumentsPiece) and p.index == i) for i in range(2)]
    assert [a for _, a in parse_answer(ANSWER, "auto").calls] == args
    assert not any(isinstance(p, TextPiece) for p in pieces)


def test_arguments_stream_before_the_call_closes():
    parser = ToolCallParser("required")
    parser.feed('<tool_call>{"name": "get_weather", "arguments": {"ci')
    assert parser.feed('ty": "Pa') == [ArgumentsPiece(0, 'ty": "Pa')]


def test_history_tool_turns_become_text_and_the_prompt_lists_tools():
    use = ToolUse(tools=(WEATHER,), choice="auto")
    messages = tool_messages(
        [
            ChatMessage(role="user", content="Weather?"),
            ChatMessage(
                role="assistant",
                content="",
                extra={"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            ),
            ChatMessage(role="tool", content="Sunny", extra={"tool_call_id": "c1"}),
        ],
        use,
    )
    assert messages[0].role == "system" and "get_weather" in messages[0].content
    assert parse_answer(messages[2].content, "required").calls == [("get_weather", '{"city": "Paris"}')]
    assert messages[3].role == "user" and "Sunny" in messages[3].content


def test_tool_grammar_keeps_each_tools_defs_apart():
    grammar = tool_gbnf(ToolUse(tools=(WEATHER, ITEMS, ToolSpec("other", None, ITEMS.parameters)), choice="required"))
    assert "t1-Item" in grammar and "t2-Item" in grammar
    assert "root ::= calls" in grammar


def test_auto_grammar_has_a_text_branch_and_parallel_cap():
    grammar = tool_gbnf(ToolUse(tools=(WEATHER,), choice="auto", parallel=False))
    assert "root ::= calls | text" in grammar
    assert "calls ::= block\n" in grammar + "\n"


def test_whitespace_before_arguments_in_its_own_piece():
    parser = ToolCallParser("required")
    pieces = parser.feed('<tool_call>{"name": "get_weather", "arguments":') + parser.feed(' {"city": "P"}}</tool_call>')
    assert "".join(p.text for p in pieces if isinstance(p, ArgumentsPiece)) == '{"city": "P"}'
    assert parser.calls == 1
