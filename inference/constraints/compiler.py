"""Compiling constraints for one loaded model's tokenizer: checked, bounded, cached, off its thread.

A `ConstraintCompiler` belongs to a loaded model (its llguidance tokenizer is built once, at load).
`compile()` turns a neutral constraint into a `CompiledConstraint`: the llguidance grammar, built
and validated under the configured limits, with its first token mask computed (a `$ref` cycle or
a grammar that can never finish shows only there). Every failure is a 400 raised *here*, before
the request is queued, and the model's owner thread only ever gets a grammar that works.
Results (failures too) are kept in an LRU keyed by the constraint's content hash, per compiler,
so per tokenizer. `constraint_prepare()` runs it in a small thread pool, off the event loop and off
the owner thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from llguidance import LLMatcher, LLParserLimits, LLTokenizer
from llguidance.gbnf_to_lark import any_to_lark

from llmservice.errors import InvalidRequest, ServiceError, UnsupportedParameter

from .json_schema import COMPACT, TEMPLATE_STYLE, Relaxation, compile_error, prepare_schema, relaxations, schema_check
from .matcher import Matcher, bitmask_words
from .tool_formats import ToolFormat
from .tool_parser import DuplicateCallGuard
from .types import AnyJsonObject, Choice, Constraint, Grammar, JsonSchema, Regex, ToolCalls, constraint_content, content_hash

logger = logging.getLogger(__name__)

TOO_BIG = "The {what} is too large ({size} bytes; this server takes at most {limit}, STRUCTURED_MAX_CONSTRAINT_BYTES)."
NOT_COMPILED = "The {what} could not be compiled: {reason}"
NEVER_COMPLETES = "The {what} cannot be followed: {reason}"
STOP_REASONS = {  # llguidance's reason when the first mask already fails
    "NoExtension": "no output can satisfy it (for example a $ref that only refers to itself)",
    "NoExtensionBias": "no output can satisfy it (for example a $ref that only refers to itself)",
    "ParserTooComplex": "it is too complex to follow within this server's limits",
    "LexerTooComplex": "it is too complex to follow within this server's limits (STRUCTURED_STEP_FUEL)",
}
NO_COMPILER = "This tier's backend does not support structured output or tool calling."
WHAT = {
    JsonSchema: "JSON schema", AnyJsonObject: "JSON object format", Regex: "regular expression",
    Choice: "choice list", Grammar: "grammar", ToolCalls: "tool-call format",
}


@dataclass(frozen=True)
class CompileLimits:
    """Bounds on what one constraint may cost (settings STRUCTURED_*)."""

    max_bytes: int = 131_072  # the constraint's content (schema, grammar, tool parameters)
    max_grammar_size: int = 500_000  # symbols in the compiled grammar (llguidance)
    initial_fuel: int = 1_000_000  # lexer work building the grammar (llguidance, ~50k/ms)
    step_fuel: int = 200_000  # lexer work per token mask (llguidance, ~14k/ms)
    max_lexer_states: int = 50_000  # ~1-2 kB each
    cache_size: int = 256  # compiled constraints kept per loaded model
    threads: int = 2  # compiling threads per process

    def parser_limits(self) -> LLParserLimits:
        return LLParserLimits(
            max_grammar_size=self.max_grammar_size,
            initial_lexer_fuel=self.initial_fuel,
            step_lexer_fuel=self.step_fuel,
            max_lexer_states=self.max_lexer_states,
            verbose_errors=False,  # messages go to clients: no grammar dumps
        )


@dataclass(frozen=True, eq=False)
class CompiledConstraint:
    """A constraint ready for one loaded model: hand each sequence its own `matcher()`."""

    grammar: str
    param: str
    relaxed: tuple[Relaxation, ...]
    tool_format: ToolFormat | None
    choice: Literal["auto", "required"] | None
    preserved_tokens: frozenset[int]  # special tokens the answer's text must show (tool markers)
    compiler: "ConstraintCompiler"
    _template: LLMatcher

    def matcher(self) -> Matcher:
        return Matcher(self._template.deep_copy(), self.compiler.n_vocab, self.compiler.eos_tokens, self.param)

    def guard(self) -> DuplicateCallGuard | None:
        """For tool calls: the guard that ends the answer at a repeated call."""
        return self.tool_format.guard(self.choice) if self.tool_format and self.choice else None


class ConstraintCompiler:
    """Compiles constraints for one tokenizer. Thread-safe: many requests compile at once."""

    def __init__(self, tokenizer: LLTokenizer, *, n_vocab: int, tool_format: ToolFormat, limits: CompileLimits):
        self.tokenizer = tokenizer
        self.n_vocab = n_vocab
        self.eos_tokens = tuple(tokenizer.eos_tokens)
        self.tool_format = tool_format
        self.limits = limits
        self._parser_limits = limits.parser_limits()
        self._specials = {m: self._special_token(m) for m in tool_format.markers}
        self._cache: OrderedDict[str, CompiledConstraint | ServiceError] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, constraint: Constraint) -> CompiledConstraint:
        """The compiled constraint, or the 400 that says why it can't be followed."""
        content = constraint_content(constraint)
        key = content_hash(content)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            try:
                cached = self._compile(constraint, len(content.encode()))
            except ServiceError as exc:
                cached = exc
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > max(self.limits.cache_size, 0):
                    self._cache.popitem(last=False)
        if isinstance(cached, ServiceError):
            raise type(cached)(cached.message, param=cached.param, code=cached.code)
        return cached

    def _compile(self, constraint: Constraint, size: int) -> CompiledConstraint:
        what = WHAT[type(constraint)]
        if size > self.limits.max_bytes:
            raise InvalidRequest(TOO_BIG.format(what=what, size=size, limit=self.limits.max_bytes), param=constraint.param)
        grammar, relaxed, schema = self._grammar(constraint)
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0, limits=self._parser_limits)
        if matcher.is_error():
            if schema is not None:
                raise compile_error(schema, matcher.get_error(), param=constraint.param)
            raise InvalidRequest(NOT_COMPILED.format(what=what, reason=_reason(matcher.get_error())), param=constraint.param)
        if schema is not None:
            relaxed = relaxations(schema, matcher.get_grammar_warnings())
        first = np.zeros(bitmask_words(self.n_vocab), dtype=np.int32)
        matcher.unsafe_compute_mask_ptr(first.ctypes.data, first.nbytes)
        if matcher.is_error() or not first.any():
            error = _reason(matcher.get_error())
            reason = STOP_REASONS.get(error) or STOP_REASONS.get(matcher.stop_reason()) or error or STOP_REASONS["NoExtension"]
            raise InvalidRequest(NEVER_COMPLETES.format(what=what, reason=reason), param=constraint.param)
        tools = isinstance(constraint, ToolCalls)
        return CompiledConstraint(
            grammar=grammar,
            param=constraint.param,
            relaxed=relaxed,
            tool_format=self.tool_format if tools else None,
            choice=constraint.choice if tools else None,
            preserved_tokens=frozenset(t for t in self._specials.values() if t is not None) if tools else frozenset(),
            compiler=self,
            _template=matcher,
        )

    def _grammar(self, constraint: Constraint) -> tuple[str, tuple[Relaxation, ...], dict | None]:
        """(llguidance grammar, relaxations known so far, the client's schema when it is one)."""
        if isinstance(constraint, JsonSchema):
            prepared = prepare_schema(constraint.schema, strict=constraint.strict, param=constraint.param)
            return _from_schema(prepared, constraint.param), (), dict(constraint.schema)
        if isinstance(constraint, AnyJsonObject):
            return _from_schema({"type": "object", "x-guidance": COMPACT}, constraint.param), (), None
        if isinstance(constraint, Regex):
            return LLMatcher.grammar_from_regex(constraint.pattern), (), None
        if isinstance(constraint, Choice):
            return LLMatcher.grammar_from_lark("start: " + " | ".join(_lark_string(o) for o in constraint.options)), (), None
        if isinstance(constraint, Grammar):
            return LLMatcher.grammar_from_lark(_lark_text(constraint)), (), None
        return self._tools_grammar(constraint)

    def _tools_grammar(self, calls: ToolCalls) -> tuple[str, tuple[Relaxation, ...], None]:
        arguments, relaxed = {}, []
        for tool in calls.callable_tools():
            param = calls.tool_param(tool.name)
            checked = schema_check(tool.parameters, strict=tool.strict, param=param, style=TEMPLATE_STYLE, where=param)
            arguments[tool.name] = _json(checked.schema)
            relaxed.extend(checked.relaxed)
        lark = self.tool_format.lark(calls, arguments, self._literal)
        return LLMatcher.grammar_from_lark(lark), tuple(relaxed), None

    def _literal(self, text: str) -> str | None:
        """`text` as a Lark expression: its markers as special tokens where the vocabulary has them."""
        parts: list[str] = []
        rest = text
        while rest:
            found = [(rest.find(m), m) for m, t in self._specials.items() if t is not None and m in rest]
            if not found:
                parts.append(_lark_string(rest))
                break
            at, marker = min(found)
            if at:
                parts.append(_lark_string(rest[:at]))
            parts.append(f"<[{self._specials[marker]}]>")
            rest = rest[at + len(marker):]
        return " ".join(parts) or None

    def _special_token(self, text: str) -> int | None:
        tokens = self.tokenizer.tokenize_str(text, parse_special=True)
        if len(tokens) == 1 and self.tokenizer.is_special_token(tokens[0]):
            return tokens[0]
        return None


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


async def constraint_prepare(*, compiler: ConstraintCompiler | None, constraint: Constraint) -> CompiledConstraint:
    """Compile `constraint` in the compile pool (never on the event loop or a model's thread)."""
    global _pool
    if compiler is None:
        raise UnsupportedParameter(NO_COMPILER, param=constraint.param)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(compiler.limits.threads, 1), thread_name_prefix="constraint-compile")
    compiled = await asyncio.get_running_loop().run_in_executor(_pool, compiler.compile, constraint)
    if compiled.relaxed:
        logger.info("Schema not strict, relaxed: %s", ", ".join(str(r) for r in compiled.relaxed))
    return compiled


def _from_schema(schema: dict, param: str) -> str:
    try:
        return LLMatcher.grammar_from_json_schema(schema)
    except ValueError as exc:
        raise InvalidRequest(NOT_COMPILED.format(what="JSON schema", reason=_reason(str(exc))), param=param) from None


def _lark_text(grammar: Grammar) -> str:
    if grammar.syntax == "lark":
        return grammar.text
    try:
        return any_to_lark(grammar.text)
    except (Exception, RecursionError) as exc:  # the converter is a hand-written parser: any failure is the input's
        raise InvalidRequest(NOT_COMPILED.format(what="GBNF grammar", reason=_reason(str(exc))), param=grammar.param) from None


def _lark_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json(schema: dict) -> str:
    return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))


def _reason(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0][:300] if lines else ""
