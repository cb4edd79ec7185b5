"""Structured output and tool calls on one constraint engine (llguidance), for every backend.

The protocol layer builds a neutral constraint (`types.py`: `JsonSchema`, `AnyJsonObject`,
`Regex`, `Choice`, `Grammar`, `ToolCalls`) and never writes grammar text. The rest happens here:

1. Once per loaded model, its backend builds an llguidance tokenizer and a compiler:
       compiler = ConstraintCompiler(tokenizer, n_vocab=..., tool_format=detect_tool_format(template),
                                     limits=CompileLimits(...))
   and exposes it as `backend.constraint_compiler`.
2. Before a request is queued (the manager's prepare step), off the event loop and off the model's
   owner thread:
       compiled = await constraint_prepare(compiler=backend.constraint_compiler, constraint=c)
   Any failure is a 400 (`llmservice.errors.InvalidRequest` or `UnsupportedParameter`). The
   result is cached by content hash; `compiled.relaxed` lists what a non-strict schema relaxed.
3. On the owner thread, each sequence gets its own matcher and, for tool calls, its own guard:
       matcher = compiled.matcher()
       guard = compiled.guard()               # None unless tool calls
   and each step (see `matcher.py` for the batched form with one bitmask for many sequences):
       matcher.apply(logits)                  # or fill_mask(bitmask[i]) + apply_bitmask(logits, bitmask)
       ...sample a token...
       if not matcher.consume(token): raise matcher.failure()
       if matcher.is_stopped(): finish with "stop"
   The text side: `guard.feed(text, logprobs)` returns what may be sent; `guard.stopped` ends the
   answer at a repeated tool call (finish "stop"); `guard.flush()` at the end. Tokens in
   `compiled.preserved_tokens` (tool-call markers that are special tokens) must be rendered in the
   answer's text.
4. Serving learns the model's tool format from `Started.tool_format` and reads calls back with
   `tool_format(name).parser(choice)` (streaming) or `.parse(text, choice)` (whole answers).
"""

from .compiler import CompileLimits, CompiledConstraint, ConstraintCompiler, constraint_prepare
from .json_schema import Relaxation
from .matcher import ConstraintFailed, Matcher, allocate_bitmask, apply_bitmask, bitmask_words, fill_masks
from .tool_formats import TOOL_FORMATS, ToolFormat, detect_tool_format, tool_format
from .tool_parser import ArgumentsPiece, CallEnd, CallStart, DuplicateCallGuard, ParsedAnswer, TextPiece, ToolCallParser
from .types import AnyJsonObject, Choice, Constraint, Grammar, JsonSchema, Regex, ToolCalls, ToolSpec

__all__ = [
    "AnyJsonObject", "ArgumentsPiece", "CallEnd", "CallStart", "Choice", "CompileLimits", "CompiledConstraint",
    "Constraint", "ConstraintCompiler", "ConstraintFailed", "DuplicateCallGuard", "Grammar", "JsonSchema", "Matcher", "ParsedAnswer",
    "Regex", "Relaxation", "TOOL_FORMATS", "TextPiece", "ToolCallParser", "ToolCalls", "ToolFormat", "ToolSpec",
    "allocate_bitmask", "apply_bitmask", "bitmask_words", "constraint_prepare", "detect_tool_format", "fill_masks",
    "tool_format",
]
