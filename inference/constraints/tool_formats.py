"""Tool-call formats: each one object owning how tools and tool turns are shown to the model,
the grammar its calls must follow, and the parser that reads them back.

The format is chosen from the model's own chat template, as `llama-server --jinja` does:
Hermes/Qwen (`<tool_call>`), Llama 3.x (a bare JSON call), Mistral (`[TOOL_CALLS]`), and a
generic format for templates that know no tools (the tools go in a system-prompt section and tool
turns are written as text, the same way for every template).

https://platform.openai.com/docs/guides/function-calling
https://github.com/ggml-org/llama.cpp/blob/master/docs/function-calling.md
https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md (Lark, `%json`, special tokens)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

from .tool_parser import CallSyntax, DuplicateCallGuard, ParsedAnswer, ToolCallParser, parse_answer
from .types import ToolCalls

if TYPE_CHECKING:
    from ..params import ChatMessage

MAX_PARALLEL_CALLS = 4  # a cap so a small model can't loop on calls until max_tokens

TOOLS_INTRO = "You can call these tools. Each line gives a tool's name, description and the JSON schema of its arguments:"
CALL_FORMAT = 'To call a tool, reply with <tool_call>{"name": <tool name>, "arguments": <arguments object>}</tool_call>'
CHOICE_HINTS = {
    "auto": " and nothing else. When no tool is needed, or a tool response already answers the question, reply in plain text instead.",
    "required": " and nothing else. You must call a tool now.",
}
ONLY_HINT = " and nothing else. You must call the tool '{name}' now."


@dataclass(frozen=True)
class ToolFormat:
    """One way of writing tool calls. `native`: the model's template renders tools and tool turns."""

    name: str
    syntax: CallSyntax
    native: bool
    markers: tuple[str, ...] = ()  # literals some vocabularies have as one special token
    max_calls: int = MAX_PARALLEL_CALLS
    id_style: Literal["openai", "mistral"] = "openai"

    # --- prompt -------------------------------------------------------------------------------
    def render(self, messages: Iterable["ChatMessage"], tools: ToolCalls | None) -> tuple[list[dict], list[dict] | None]:
        """The messages as the chat template takes them, and the `tools` it is given (or None)."""
        if self.native:
            return [self._native_message(m) for m in messages], _openai_tools(tools) if tools else None
        return _generic_messages(messages, tools), None

    def _native_message(self, message: "ChatMessage") -> dict:
        data = message.as_template_dict()
        if data.get("tool_calls"):
            data["tool_calls"] = [
                {
                    **call,
                    "id": self._call_id(call.get("id", "")),
                    "function": {"name": call["function"]["name"], "arguments": _arguments(call["function"])},
                }
                for call in data["tool_calls"]
            ]
        if "tool_call_id" in data:
            data["tool_call_id"] = self._call_id(data["tool_call_id"])
        return data

    def _call_id(self, ident: str) -> str:
        """Mistral's templates insist on 9 alphanumerics; the same id maps the same way everywhere."""
        if self.id_style == "mistral":
            return hashlib.sha1(ident.encode()).hexdigest()[:9]
        return ident

    # --- constraint ---------------------------------------------------------------------------
    def lark(self, calls: ToolCalls, arguments: dict[str, str], literal: Callable[[str], str | None]) -> str:
        """The Lark grammar of the answers `calls` allows.

        `arguments[name]` is the JSON (a schema with its llguidance options) for `%json`;
        `literal(text)` writes a literal, as a special token where the vocabulary has one."""
        s = self.syntax
        tools = calls.callable_tools()
        most = 1 if calls.only or not calls.parallel else self.max_calls
        lines = ["start: calls | TEXT" if calls.choice == "auto" else "start: calls"]
        repeat = f"({_join(literal(s.separator), 'call')}){{0,{most - 1}}}" if most > 1 else ""
        lines.append("calls: " + _join(literal(s.start), "call", repeat, literal(s.end)))
        lines.append("call: " + _join(literal(s.open), "body", literal(s.close)))
        lines.append("body: " + " | ".join(f"f{i}" for i in range(len(tools))))
        for i, tool in enumerate(tools):
            head = json.dumps(f'{{"name": "{tool.name}", "{s.args_key}": ')
            lines.append(f'f{i}: {head} a{i} "}}"')
            lines.append(f"a{i}: %json {arguments[tool.name]}")
        if calls.choice == "auto":
            lines.append(f"TEXT: /[^{_regex_escape(s.first_char)}\\s](?s:.*)/")
        return "\n".join(lines) + "\n"

    # --- reading the answer -------------------------------------------------------------------
    def parser(self, choice: Literal["auto", "required"]) -> ToolCallParser:
        return ToolCallParser(self.syntax, choice)

    def parse(self, text: str, choice: Literal["auto", "required"]) -> ParsedAnswer:
        return parse_answer(text, self.syntax, choice)

    def guard(self, choice: Literal["auto", "required"]) -> DuplicateCallGuard:
        return DuplicateCallGuard(self.syntax, choice)


TAGS = ("<tool_call>", "</tool_call>")
GENERIC = ToolFormat(
    "generic", CallSyntax(start="", open="<tool_call>", close="</tool_call>", separator="\n", end=""), native=False, markers=TAGS
)
HERMES = ToolFormat(
    "hermes", CallSyntax(start="", open="<tool_call>\n", close="\n</tool_call>", separator="\n", end=""), native=True, markers=TAGS
)
# Llama 3.x templates take one call per assistant turn (they raise on more).
LLAMA3 = ToolFormat(
    "llama3", CallSyntax(start="", open="", close="", separator="; ", end="", args_key="parameters"), native=True, max_calls=1
)
MISTRAL = ToolFormat(
    "mistral",
    CallSyntax(start="[TOOL_CALLS][", open="", close="", separator=", ", end="]"),
    native=True,
    markers=("[TOOL_CALLS]",),
    id_style="mistral",
)
TOOL_FORMATS = {f.name: f for f in (GENERIC, HERMES, LLAMA3, MISTRAL)}


def tool_format(name: str | None) -> ToolFormat:
    """The format a loaded model reported (`Started.tool_format`); generic when none."""
    return TOOL_FORMATS.get(name or "generic", GENERIC)


def detect_tool_format(template: str | None) -> ToolFormat:
    """The tool format a chat template was written for; generic when it renders no tools."""
    if not template or "tools" not in template:
        return GENERIC
    if "<tool_call>" in template:
        return HERMES
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<|start_header_id|>" in template and ("ipython" in template or '"parameters"' in template):
        return LLAMA3
    return GENERIC


# --- helpers --------------------------------------------------------------------------------------
def _join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def _regex_escape(char: str) -> str:
    return "\\" + char if char in "[]\\^-/" else char


def _arguments(function: dict) -> Any:
    """A call's arguments as templates want them: the object, not its JSON text."""
    try:
        return json.loads(function.get("arguments") or "{}")
    except ValueError:
        return function.get("arguments")


def _openai_tools(calls: ToolCalls) -> list[dict]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description or "", "parameters": dict(t.parameters)}}
        for t in calls.tools
    ]


def _generic_prompt(calls: ToolCalls) -> str:
    lines = [TOOLS_INTRO]
    for tool in calls.tools:
        entry = {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters}
        lines.append(json.dumps(entry, separators=(",", ":")))
    hint = ONLY_HINT.format(name=calls.only) if calls.only else CHOICE_HINTS[calls.choice]
    return "\n".join(lines) + "\n" + CALL_FORMAT + hint


def _generic_messages(messages: Iterable["ChatMessage"], calls: ToolCalls | None) -> list[dict]:
    """Tool turns written as text and the tools in the system turn: every template renders that."""
    out: list[dict] = []
    for message in messages:
        data = message.as_template_dict()
        tool_calls = data.pop("tool_calls", None)
        data.pop("tool_call_id", None)
        if message.role == "assistant" and tool_calls:
            text = "".join(
                GENERIC.syntax.open
                + json.dumps({"name": c.get("function", {}).get("name"), "arguments": _arguments(c.get("function", {}))})
                + GENERIC.syntax.close
                for c in tool_calls
            )
            data["content"] = (message.content or "") + text
        elif message.role == "tool":
            data = {"role": "user", "content": f"<tool_response>{message.content or ''}</tool_response>"}
        out.append(data)
    if calls is not None:
        prompt = _generic_prompt(calls)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out
