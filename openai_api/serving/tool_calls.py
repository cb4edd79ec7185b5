"""A tool-using answer shaped as OpenAI `message.tool_calls`, whole or as streamed deltas.

How the model wrote its calls is its tool format's business (`inference.constraints`); the
format is the one the loaded model reported on `Started`, never a guess.

https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices
https://platform.openai.com/docs/api-reference/chat-streaming/streaming
"""

from __future__ import annotations

import uuid

from inference.constraints import ArgumentsPiece, CallStart, TextPiece, ToolCalls, tool_format


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def finish_reason(reason: str, called: bool) -> str:
    """OpenAI says "tool_calls" when the model stopped after calling; "length" stays "length"."""
    return "tool_calls" if called and reason == "stop" else reason


def chat_message(text: str, calls: ToolCalls | None, format_name: str | None) -> tuple[dict, bool]:
    """The assistant message for a whole answer, and whether it called tools."""
    if calls is None:
        return {"role": "assistant", "content": text, "refusal": None}, False
    answer = tool_format(format_name).parse(text, calls.choice)
    if not answer.calls and answer.content is not None:
        return {"role": "assistant", "content": answer.content, "refusal": None}, False
    shaped = [
        {"id": call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}
        for name, arguments in answer.calls
    ]
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": shaped}, True


class ToolCallDeltas:
    """Turns streamed text into `delta` objects: content, or `tool_calls` entries.

    The first delta of each call carries its index, id, type and name (arguments ""); the
    following ones carry pieces of its arguments.
    """

    def __init__(self, calls: ToolCalls, format_name: str | None):
        self._parser = tool_format(format_name).parser(calls.choice)
        self.called = False

    def feed(self, text: str) -> list[dict]:
        deltas = []
        for piece in self._parser.feed(text):
            if isinstance(piece, TextPiece):
                deltas.append({"content": piece.text})
            elif isinstance(piece, CallStart):
                self.called = True
                call = {"index": piece.index, "id": call_id(), "type": "function", "function": {"name": piece.name, "arguments": ""}}
                deltas.append({"tool_calls": [call]})
            elif isinstance(piece, ArgumentsPiece):
                deltas.append({"tool_calls": [{"index": piece.index, "function": {"arguments": piece.text}}]})
        return deltas

    @property
    def first_delta(self) -> dict:
        """The opening delta: role only, content "" (OpenAI sends content null when calling tools)."""
        return {"role": "assistant", "content": None} if self._parser.mode == "calls" else {"role": "assistant", "content": ""}
