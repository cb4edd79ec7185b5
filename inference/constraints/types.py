"""The neutral constraint objects the protocol layer builds and every backend compiles.

They say *what* the output must look like, never *how* (no grammar text): a backend's
`ConstraintCompiler` turns them into llguidance grammars for its own tokenizer. Each carries the
request parameter it came from, so an error or a relaxation names what the client sent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping


@dataclass(frozen=True, slots=True)
class JsonSchema:
    """One JSON value valid against `schema`.

    `strict` follows OpenAI: true refuses a keyword that can't be enforced (a 400 naming it);
    false enforces what can be enforced and relaxes the rest (reported, never silent).
    """

    schema: Mapping[str, Any]
    strict: bool
    param: str


@dataclass(frozen=True, slots=True)
class AnyJsonObject:
    """One JSON object, any content (`response_format: json_object`)."""

    param: str


@dataclass(frozen=True, slots=True)
class Regex:
    """Text matching a regular expression (Rust `regex` syntax, anchored at both ends)."""

    pattern: str
    param: str


@dataclass(frozen=True, slots=True)
class Choice:
    """Exactly one of the given strings."""

    options: tuple[str, ...]
    param: str


@dataclass(frozen=True, slots=True)
class Grammar:
    """Text in a context-free grammar: llguidance's Lark dialect, or llama.cpp's GBNF."""

    text: str
    syntax: Literal["lark", "gbnf"]
    param: str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; `parameters` is the JSON schema of its arguments."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The output is tool calls ("required"), or either calls or plain text ("auto").

    `only` restricts the answer to exactly one call of that tool; `parallel` allows more than
    one call otherwise. How calls are written is the loaded model's tool format's business.
    """

    tools: tuple[ToolSpec, ...]
    choice: Literal["auto", "required"]
    only: str | None = None
    parallel: bool = True
    param: str = "tools"

    def callable_tools(self) -> tuple[ToolSpec, ...]:
        return tuple(t for t in self.tools if self.only is None or t.name == self.only)

    def tool_param(self, name: str) -> str:
        index = next(i for i, t in enumerate(self.tools) if t.name == name)
        return f"tools.{index}.function.parameters"


Constraint = JsonSchema | AnyJsonObject | Regex | Choice | Grammar | ToolCalls


def constraint_content(constraint: Constraint) -> str:
    """The constraint as canonical JSON: its size is what the limit counts, its hash the cache key."""
    if isinstance(constraint, ToolCalls):
        body: Any = {
            "tools": [[t.name, t.description, t.parameters, t.strict] for t in constraint.tools],
            "choice": constraint.choice,
            "only": constraint.only,
            "parallel": constraint.parallel,
        }
    elif isinstance(constraint, JsonSchema):
        body = [constraint.schema, constraint.strict]
    elif isinstance(constraint, Regex):
        body = constraint.pattern
    elif isinstance(constraint, Choice):
        body = list(constraint.options)
    elif isinstance(constraint, Grammar):
        body = [constraint.syntax, constraint.text]
    else:
        body = None
    return json.dumps([type(constraint).__name__, constraint.param, body], sort_keys=True, separators=(",", ":"))


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
