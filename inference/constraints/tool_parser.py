"""Reading tool calls back out of a model's answer: incrementally (for streaming), whole, and
the guard that ends an answer at a repeated call.

Every tool format writes an answer the same way, only with its own literals (`CallSyntax`):
`start`, then calls separated by `separator`, each `open` + `{"name": ..., "<args_key>": {...}}`
+ `close`, then `end`. The constraint makes the model follow it, so the parser can be simple;
it still tolerates whitespace between the pieces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterator, Literal


@dataclass(frozen=True, slots=True)
class CallSyntax:
    """The literals of one tool format's answers (whitespace around them is not significant)."""

    start: str
    open: str
    close: str
    separator: str
    end: str
    args_key: str = "arguments"

    @property
    def first_char(self) -> str:
        """What a calling answer starts with; a plain-text answer may not start with it."""
        return (self.start + self.open).strip()[:1] or "{"


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


@dataclass(frozen=True, slots=True)
class CallEnd:
    """A call is complete; `end` is its offset just past it in the whole answer's text."""

    index: int
    name: str
    arguments: str
    end: int


ParsedPiece = TextPiece | CallStart | ArgumentsPiece | CallEnd


class ToolCallParser:
    """Feed the answer's text as it comes; get text, call starts, argument pieces and call ends.

    Argument text is released as soon as it can't be part of the call's closing, so a client
    sees the arguments grow token by token.
    """

    def __init__(self, syntax: CallSyntax, choice: Literal["auto", "required"]):
        self.syntax = syntax
        self.mode: str | None = None if choice == "auto" else "calls"
        self.calls = 0
        self._buf = ""
        self._base = 0  # offset of _buf[0] in the whole answer
        self._state = "start"
        self._name = ""
        self._args = ""
        self._sent = 0
        self._decoder = json.JSONDecoder()
        self._head = re.compile(
            r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"' + re.escape(syntax.args_key) + r'"\s*:\s*', re.S
        )

    def feed(self, text: str) -> list[ParsedPiece]:
        if self.mode is None:
            if not text:
                return []
            self.mode = "calls" if text.lstrip().startswith(self.syntax.first_char) else "text"
        if self.mode == "text":
            return [TextPiece(text)] if text else []
        self._buf += text
        return list(self._advance())

    def _literal(self, literal: str) -> bool | None:
        """Consume `literal` (after whitespace): True, False if the text differs, None if undecided."""
        want = literal.strip()
        stripped = self._buf.lstrip()
        if not want:
            return True
        if stripped.startswith(want):
            self._skip(len(self._buf) - len(stripped) + len(want))
            return True
        return None if want.startswith(stripped) else False

    def _skip(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._base += n

    def _advance(self) -> Iterator[ParsedPiece]:
        syntax = self.syntax
        while True:
            if self._state == "start":
                if not self._literal(syntax.start):
                    return
                self._state = "open"
            if self._state == "open":
                if not self._literal(syntax.open):
                    return
                self._state = "head"
            if self._state == "head":
                match = self._head.match(self._buf)
                if not match:
                    return
                self._name = json.loads(f'"{match.group(1)}"')
                yield CallStart(self.calls, self._name)
                self._skip(match.end())
                self._state, self._args, self._sent = "args", "", 0
            if self._state == "args":
                if not self._args:
                    self._skip(len(self._buf) - len(self._buf.lstrip()))
                self._args += self._buf
                self._skip(len(self._buf))
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
                rest = self._args[end:]
                self._args = self._args[:end]
                self._buf, self._base = rest, self._base - len(rest)
                self._state = "brace"
            if self._state == "brace":
                if not self._literal("}"):
                    return
                self._state = "close"
            if self._state == "close":
                if not self._literal(syntax.close):
                    return
                yield CallEnd(self.calls, self._name, self._args, self._base)
                self.calls += 1
                self._state = "next"
            if self._state == "next":
                following = self._next()
                if following is None:
                    return
                self._state = following
            if self._state == "done":
                return

    def _next(self) -> str | None:
        """After a call: the state the next piece of text leads to (None: not decided yet)."""
        separator, end, opening = (s.strip() for s in (self.syntax.separator, self.syntax.end, self.syntax.open))
        if not self._buf.strip():
            return None
        for literal, state in ((separator, "open"), (end, "done"), ("" if separator else opening, "head")):
            if literal:
                found = self._literal(literal)
                if found is None:
                    return None
                if found:
                    return state
        return "done"  # text the format doesn't allow here: nothing more to read


@dataclass
class ParsedAnswer:
    """A whole answer: plain text, or calls as (name, arguments text) pairs."""

    content: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)


def parse_answer(text: str, syntax: CallSyntax, choice: Literal["auto", "required"]) -> ParsedAnswer:
    """The whole answer's calls (a call cut short by max_tokens keeps what it has), or its text."""
    parser = ToolCallParser(syntax, choice)
    content: list[str] = []
    calls: list[list[str]] = []
    for piece in parser.feed(text):
        if isinstance(piece, TextPiece):
            content.append(piece.text)
        elif isinstance(piece, CallStart):
            calls.append([piece.name, ""])
        elif isinstance(piece, ArgumentsPiece):
            calls[piece.index][1] += piece.text
    if parser.mode == "calls":
        return ParsedAnswer(content=None, calls=[(n, a) for n, a in calls])
    return ParsedAnswer(content="".join(content))


class DuplicateCallGuard:
    """Ends an answer at a call identical to one it already made, and drops that call.

    A tiny model otherwise repeats `{"input": 3}` until max_tokens. Text after the first call is
    held back until the next call is complete (or the answer ends), so a dropped duplicate is
    never streamed. Pieces are (text, attachments) pairs: a token's logprobs travel with its text.
    """

    def __init__(self, syntax: CallSyntax, choice: Literal["auto", "required"]):
        self._parser = ToolCallParser(syntax, choice)
        self._seen: set[tuple[str, str]] = set()
        self._pending: list[tuple[str, list]] = []
        self._pending_from = 0  # offset in the answer of the first pending character
        self._boundary: int | None = None  # text before it may go out; None: all of it
        self.stopped = False

    def feed(self, text: str, attachments: list) -> list[tuple[str, list]]:
        """What may be sent now; once `stopped` is set the answer ends there."""
        if self.stopped:
            return []
        self._pending.append((text, attachments))
        for piece in self._parser.feed(text):
            if not isinstance(piece, CallEnd):
                continue
            key = (piece.name, _canonical(piece.arguments))
            if key in self._seen:
                self.stopped = True
                released = self._take(self._boundary)
                self._pending = []
                return released
            self._seen.add(key)
            self._boundary = piece.end
        return self._take(self._boundary)

    def flush(self) -> list[tuple[str, list]]:
        """The held text, once the answer has ended without a repeat (trailing text, a cut call)."""
        return [] if self.stopped else self._take(None)

    def _take(self, upto: int | None) -> list[tuple[str, list]]:
        """Release pending text before answer offset `upto` (None: all of it)."""
        out: list[tuple[str, list]] = []
        position = self._pending_from
        while self._pending:
            text, attachments = self._pending[0]
            if upto is None or position + len(text) <= upto:
                out.append((text, attachments))
                position += len(text)
                self._pending.pop(0)
            elif position < upto:  # the boundary falls inside this piece
                cut = upto - position
                out.append((text[:cut], []))
                self._pending[0] = (text[cut:], attachments)
                position = upto
                break
            else:
                break
        self._pending_from = position
        return [(t, a) for t, a in out if t or a]


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments
