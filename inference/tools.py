"""Tool calling as text: how tools are shown to the model, the grammar its answer must follow,
and the parser that turns that answer back into calls (also incrementally, for streaming).

The wire format (Hermes-style, which small instruct models have mostly seen):
`<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>`, one block per call. With
`auto`, a plain-text answer must not start with `<` or whitespace, so the first character
tells which branch the model took.

https://platform.openai.com/docs/guides/function-calling
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from .grammar import gbnf_literal, gbnf_with
from .params import ChatMessage, ToolUse

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESPONSE_OPEN = "<tool_response>"
RESPONSE_CLOSE = "</tool_response>"
MAX_PARALLEL_CALLS = 4  # a cap so a small model can't loop on calls until max_tokens

TOOLS_INTRO = "You can call these tools. Each line gives a tool's name, description and the JSON schema of its arguments:"
CALL_FORMAT = 'To call a tool, reply with {open}{{"name": <tool name>, "arguments": <arguments object>}}{close}'
CHOICE_HINTS = {
    "auto": " and nothing else. When no tool is needed, or a tool response already answers the question, reply in plain text instead.",
    "required": " and nothing else. You must call a tool now.",
}


# --- prompt ---------------------------------------------------------------------------------
def tool_prompt(use: ToolUse) -> str:
    """The system-prompt text that tells the model its tools and the call format."""
    lines = [TOOLS_INTRO]
    for tool in use.tools:
        entry = {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters}
        lines.append(json.dumps(entry, separators=(",", ":")))
    fmt = CALL_FORMAT.format(open=CALL_OPEN, close=CALL_CLOSE)
    hint = CHOICE_HINTS[use.choice]
    if use.only:
        hint = f" and nothing else. You must call the tool '{use.only}' now."
    return "\n".join(lines) + "\n" + fmt + hint


def tool_messages(messages: Iterable[ChatMessage], use: ToolUse | None) -> tuple[ChatMessage, ...]:
    """The conversation with tool turns written as text, and the tool prompt in the system turn.

    Chat templates differ (or are silent) on `tool_calls` and the `tool` role; as text every
    template renders them the same way.
    """
    out: list[ChatMessage] = []
    for message in messages:
        calls = message.extra.get("tool_calls")
        if message.role == "assistant" and calls:
            text = (message.content or "") + "".join(_call_text(c) for c in calls)
            out.append(ChatMessage(role="assistant", content=text, name=message.name))
        elif message.role == "tool":
            out.append(ChatMessage(role="user", content=f"{RESPONSE_OPEN}{message.content or ''}{RESPONSE_CLOSE}"))
        else:
            out.append(message)
    if use is not None:
        prompt = tool_prompt(use)
        if out and out[0].role == "system":
            out[0] = ChatMessage(role="system", content=f"{out[0].content}\n\n{prompt}", name=out[0].name)
        else:
            out.insert(0, ChatMessage(role="system", content=prompt))
    return tuple(out)


def _call_text(call: dict) -> str:
    function = call.get("function", {})
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = function.get("arguments")
    return CALL_OPEN + json.dumps({"name": function.get("name"), "arguments": arguments}) + CALL_CLOSE


# --- grammar --------------------------------------------------------------------------------
def tool_gbnf(use: ToolUse) -> str:
    """A GBNF grammar admitting exactly the answers `use` allows."""
    tools = [t for t in use.tools if use.only is None or t.name == use.only]
    defs: dict = {}
    alternatives = []
    for i, tool in enumerate(tools):
        parameters = _prefix_refs(dict(tool.parameters), f"t{i}-", defs)
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = {"$defs": defs, "anyOf": alternatives} if len(alternatives) > 1 else {"$defs": defs, **alternatives[0]}
    block = f"{gbnf_literal(CALL_OPEN)} call {gbnf_literal(CALL_CLOSE)}"
    more = MAX_PARALLEL_CALLS - 1 if use.parallel else 0
    calls = "block" + ' ("\\n"? block' * more + ")?" * more
    rules = {"block": block, "calls": calls}
    if use.choice == "auto":
        rules["root"] = "calls | text"
        rules["text"] = r"[^< \t\n\r] [\U00000001-\U0010FFFF]*"
    else:
        rules["root"] = "calls"
    return gbnf_with(schema, "call", rules, param="tools")


def _prefix_refs(schema: dict, prefix: str, defs: dict) -> dict:
    """Move a tool's local `$defs` into the shared ones under `prefix`, rewriting its `$ref`s."""
    local = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}

    def rewrite(node):
        if isinstance(node, list):
            return [rewrite(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: rewrite(v) for k, v in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str):
            for base in ("#/$defs/", "#/definitions/"):
                if ref.startswith(base):
                    node["$ref"] = "#/$defs/" + prefix + ref[len(base):]
        return node

    for name, sub in local.items():
        defs[prefix + name] = rewrite(sub)
    return rewrite(schema)


# --- parsing the answer back ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class ArgumentsPiece:
    index: int
    text: str


ParsedPiece = TextPiece | CallStart | ArgumentsPiece
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*', re.S)
_TAIL = re.compile(r"\s*\}\s*" + re.escape(CALL_CLOSE), re.S)


class ToolCallParser:
    """Feed the model's text as it comes; get text, call starts and argument pieces back.

    Argument text is released as soon as it can't be part of the call's closing, so a client
    sees the arguments grow token by token.
    """

    def __init__(self, choice: str):
        self.mode: str | None = None if choice == "auto" else "calls"
        self.calls = 0
        self._buf = ""
        self._state = "open"
        self._args = ""
        self._sent = 0
        self._decoder = json.JSONDecoder()

    def feed(self, text: str) -> list[ParsedPiece]:
        if self.mode is None:
            if not text:
                return []
            self.mode = "calls" if text.lstrip().startswith("<") else "text"
        if self.mode == "text":
            return [TextPiece(text)] if text else []
        self._buf += text
        return list(self._advance())

    def _advance(self) -> Iterator[ParsedPiece]:
        while True:
            if self._state == "open":
                stripped = self._buf.lstrip()
                if not stripped.startswith(CALL_OPEN):
                    return
                self._buf = stripped[len(CALL_OPEN):]
                self._state = "head"
            if self._state == "head":
                match = _HEAD.match(self._buf)
                if not match:
                    return
                yield CallStart(self.calls, json.loads(f'"{match.group(1)}"'))
                self._buf = self._buf[match.end():]
                self._state, self._args, self._sent = "args", "", 0
            if self._state == "args":
                self._args += self._buf if self._args else self._buf.lstrip()
                self._buf = ""
                try:
                    _, end = self._decoder.raw_decode(self._args)
                except ValueError:
                    end = None
                upto = len(self._args) if end is None else end
                if upto > self._sent:
                    yield ArgumentsPiece(self.calls, self._args[self._sent:upto])
                    self._sent = upto
                if end is None:
                    return
                self._buf, self._args = self._args[end:], self._args[:end]
                self._state = "tail"
            if self._state == "tail":
                match = _TAIL.match(self._buf)
                if not match:
                    return
                self._buf = self._buf[match.end():]
                self.calls += 1
                self._state = "open"


@dataclass
class ParsedAnswer:
    """A whole answer: plain text, or calls as (name, arguments text) pairs."""

    content: str | None
    calls: list[tuple[str, str]]


def parse_answer(text: str, choice: str) -> ParsedAnswer:
    parser = ToolCallParser(choice)
    content: list[str] = []
    calls: list[list[str]] = []
    for piece in parser.feed(text):
        if isinstance(piece, TextPiece):
            content.append(piece.text)
        elif isinstance(piece, CallStart):
            calls.append([piece.name, ""])
        else:
            calls[piece.index][1] += piece.text
    if parser.mode == "calls":
        return ParsedAnswer(content=None, calls=[(n, a) for n, a in calls])
    return ParsedAnswer(content="".join(content), calls=[])
