"""What every llama.cpp engine shares: the model checks, the prompt (chat template, tool format,
tokens, stops), token text and logprobs, the constraint compiler and each sequence's constraint.

Both the one-at-a-time backend (`backends/llamacpp.py`) and the batched engine
(`engines/llamacpp_batched.py`) build prompts and read tokens through here, so a request is
tokenized the same way whichever serves it. `model` is llama-cpp-python's `_internals.LlamaModel`
(a `Llama` has one as `._model`).
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, get_args

import numpy as np
from django.conf import settings

from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable, UnsupportedParameter

from . import llama_threads
from .constraints import CompileLimits, CompiledConstraint, ConstraintCompiler, DuplicateCallGuard, ToolCalls
from .constraints import detect_tool_format
from .constraints.tool_formats import GENERIC
from .events import Delta, Thinking, TokenLogprob
from .gguf import gguf_problem
from .options import EngineOptions, option
from .params import GenerationRequest, ModelSpec
from .thinking import NO_SWITCH, thinking_state, thinking_switch, thinking_tags

logger = logging.getLogger("llama_cpp")

# Named chat formats a tier may force instead of the GGUF's own template.
ChatFormat = Literal["chatml", "llama-2", "llama-3", "mistral-instruct", "gemma", "qwen", "zephyr"]
CHAT_FORMATS = get_args(ChatFormat)
UNPREPARED = "A constrained request reached the model without its compiled constraint."
TEMPLATE_REJECTED = "The model's chat template rejected these messages: {error}"
TOKEN_OUTSIDE_VOCAB = "Token id {token} is outside the vocabulary."
BIAS_OUTSIDE_VOCAB = "logit_bias token id {token} is outside the vocabulary."
CONTEXT_EXCEEDED = (
    "This model's maximum context length is {n_ctx} tokens. However, your {param} resulted in {count} "
    "tokens. Please reduce the length of the {param}."
)


class LlamaCppOptions(EngineOptions):
    """Load options of a llama.cpp chat tier; unset ones take the global N_CTX, N_GPU_LAYERS, ... settings."""

    n_ctx: int = option(2048, setting="N_CTX", ge=16, description="Context window of one request, in tokens.")
    n_gpu_layers: int = option(0, setting="N_GPU_LAYERS", ge=-1, description="Layers offloaded to a GPU (-1: all).")
    n_threads: int | None = option(None, setting="N_THREADS", ge=0, description="CPU threads (0: llama.cpp's choice).")
    n_batch: int = option(512, setting="N_BATCH", ge=1, description="Prompt tokens evaluated per batch.")
    chat_format: ChatFormat | None = option(None, description="A named chat format instead of the GGUF's own template.")


def spec_problems(spec: ModelSpec) -> list[str]:
    """What would stop a GGUF tier from loading: the file and its header (options are validated apart)."""
    problems = []
    path = spec.model_path
    if not path:
        problems.append("no model path is set")
    elif not os.path.isfile(path):
        problems.append(f"model file not found: {path}")
    elif not os.access(path, os.R_OK):
        problems.append(f"model file is not readable: {path}")
    elif problem := gguf_problem(path):
        problems.append(problem)
    return problems


def gguf_model_load(spec: ModelSpec, n_gpu_layers: int) -> Any:
    """The GGUF's weights (llama-cpp-python's `LlamaModel`), llama.cpp's logs routed to ours."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    route_llama_logs()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
    try:
        return LlamaModel(path_model=spec.model_path, params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc


def gguf_context(spec: ModelSpec, model: Any, params: Any) -> Any:
    """A `llama_context` on `model` with its thread pools (inference/llama_threads.py); free it
    with `free_context`. The model is closed if llama.cpp can't make one."""
    import llama_cpp

    ctx = llama_cpp.llama_init_from_model(model.model, params)
    if not ctx:
        model.close()
        raise ModelUnavailable(f"Model '{spec.name}' failed to load: llama.cpp could not create its context.")
    try:
        llama_threads.attach(ctx, params.n_threads, params.n_threads_batch)
    except MemoryError as exc:
        llama_cpp.llama_free(ctx)
        model.close()
        raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc
    return ctx


def free_context(ctx: Any) -> None:
    """Free a context from `gguf_context`, then its thread pools."""
    import llama_cpp

    llama_cpp.llama_free(ctx)
    llama_threads.release(ctx)


def _named_formatter(name: str):
    from llama_cpp import llama_chat_format as f

    return {
        "chatml": f.format_chatml,
        "llama-2": f.format_llama2,
        "llama-3": f.format_llama3,
        "mistral-instruct": f.format_mistral_instruct,
        "gemma": f.format_gemma,
        "qwen": f.format_qwen,
        "zephyr": f.format_zephyr,
    }[name]


@dataclass(frozen=True, slots=True)
class Prompt:
    """A request's prompt as tokens, with the stop strings that apply and how to name it in errors."""

    tokens: list[int]
    stops: list[str]
    param: str  # "messages" or "prompt"
    echo: str | None  # the prompt text, when the request asked for it back
    thinking: Thinking | None = None  # the template's thinking tags, and whether the prompt left a block open

    def check_fits(self, n_ctx: int) -> None:
        """Refuse a prompt that leaves no room for one generated token (OpenAI's wording)."""
        if len(self.tokens) >= n_ctx:
            raise ContextLengthExceeded(
                CONTEXT_EXCEEDED.format(n_ctx=n_ctx, param=self.param, count=len(self.tokens)), param=self.param
            )


class PromptBuilder:
    """A model's chat template (the GGUF's own, or a named format) and tokenizer."""

    def __init__(self, model: Any, chat_format: str | None = None):
        self._model = model
        self.n_vocab = model.n_vocab()
        self.metadata: Mapping[str, str] = model.metadata()
        self._formatter, self.stop_token_ids = self._chat_formatter(chat_format)
        template = None if chat_format else self.metadata.get("tokenizer.chat_template")
        self.tool_format = detect_tool_format(template) if template else GENERIC
        self.thinking_tags, self.thinking_switch = thinking_tags(template), thinking_switch(template)

    def _chat_formatter(self, chat_format: str | None) -> tuple[Callable, frozenset[int]]:
        if chat_format:
            return _named_formatter(chat_format), frozenset()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.metadata.get("tokenizer.chat_template")
        if not template:
            return _named_formatter("chatml"), frozenset()
        model = self._model
        eos_id, bos_id = model.token_eos(), model.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        return formatter, frozenset({eos_id})

    def build(self, request: GenerationRequest) -> Prompt:
        """The request's messages through the chat template, or its raw prompt, as tokens."""
        stops = list(request.sampling.stop)
        if request.messages is not None:
            calls = request.constraint if isinstance(request.constraint, ToolCalls) else None
            messages, tools = self.tool_format.render(request.messages, calls)
            switch: dict[str, bool] = {}
            if request.thinking is not None:
                if self.thinking_switch is None:
                    raise UnsupportedParameter(NO_SWITCH, param="reasoning_effort")
                switch[self.thinking_switch] = request.thinking
            try:
                result = self._formatter(messages=messages, tools=tools, **switch)
            except Exception as exc:  # the template's own raise_exception(), or a Jinja error
                raise InvalidRequest(TEMPLATE_REJECTED.format(error=exc), param="messages") from exc
            tokens = self.tokenize(result.prompt, add_bos=not result.added_special)
            template_stops = result.stop if isinstance(result.stop, list) else [result.stop]
            thinking = thinking_state(self.thinking_tags, result.prompt)
            return Prompt(tokens, stops + [s for s in template_stops if s], "messages", None, thinking)
        prompt = request.prompt
        if isinstance(prompt, tuple):
            tokens = checked_token_ids(prompt, self.n_vocab)
            text = self._model.detokenize(tokens).decode("utf-8", "replace")
        else:
            text = prompt or ""
            tokens = self.tokenize(text, add_bos=True)
        return Prompt(tokens, stops, "prompt", text if request.echo else None)

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos, True)


class TokenText:
    """A token's bytes (`llama_token_to_piece`) into one reused buffer: no allocation per token."""

    def __init__(self, vocab: Any):
        import llama_cpp

        self._to_piece = llama_cpp.llama_token_to_piece
        self._vocab = vocab
        self._buf = ctypes.create_string_buffer(64)

    def __call__(self, token: int, special: bool = False) -> bytes:
        """The token's text; a special token's only when `special` (a tool-call marker)."""
        buf = self._buf
        n = self._to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            self._buf = buf = ctypes.create_string_buffer(-n)
            n = self._to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]


def compile_limits() -> CompileLimits:
    """The constraint compiler's bounds, from the STRUCTURED_* settings."""
    return CompileLimits(
        max_bytes=settings.STRUCTURED_MAX_CONSTRAINT_BYTES,
        max_grammar_size=settings.STRUCTURED_MAX_GRAMMAR_SIZE,
        initial_fuel=settings.STRUCTURED_INITIAL_FUEL,
        step_fuel=settings.STRUCTURED_STEP_FUEL,
        max_lexer_states=settings.STRUCTURED_MAX_LEXER_STATES,
        cache_size=settings.STRUCTURED_CACHE_SIZE,
        threads=settings.STRUCTURED_COMPILE_THREADS,
    )


def constraint_compiler(vocab: Any, n_vocab: int, prompts: PromptBuilder) -> ConstraintCompiler:
    """The model's constraint compiler, built once at load (about 0.25 s for a 49k vocabulary):
    llguidance's view of the vocabulary, every end-of-generation token counting as its EOS."""
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    eog = [t for t in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    tokenizer = lltokenizer_from_vocab(vocab, eos_token=eog or None)
    return ConstraintCompiler(tokenizer, n_vocab=n_vocab, tool_format=prompts.tool_format, limits=compile_limits())


class SequenceConstraint:
    """One sequence's share of a compiled constraint: its own matcher, its own repeated-call guard
    (tool calls), and the special tokens whose text the answer shows (tool-call markers)."""

    __slots__ = ("matcher", "guard", "preserved")

    def __init__(self, compiled: CompiledConstraint):
        self.matcher = compiled.matcher()
        self.guard: DuplicateCallGuard | None = compiled.guard()
        self.preserved = compiled.preserved_tokens

    def mask(self, input_ids, scores):
        """As a llama-cpp-python logits processor. Called by llama.cpp's sampler through ctypes: it
        must not raise (a failure masks all but the end; the loop reports it when the token comes back)."""
        return self.matcher.apply(scores)

    @property
    def stopped(self) -> bool:
        """The answer is complete: the grammar allows nothing more, or a tool call repeated."""
        return self.matcher.is_stopped() or (self.guard is not None and self.guard.stopped)


def deltas(text: str, released: list, guard: DuplicateCallGuard | None, index: int = 0, final: bool = False) -> Iterator[Delta]:
    """The events for new answer text (through the repeated-call guard when there is one)."""
    pieces = [(text, released)] if guard is None else guard.feed(text, released) + (guard.flush() if final else [])
    for piece, logprobs in pieces:
        if piece or logprobs:
            yield Delta(piece, logprobs or None, index)


def checked_token_ids(prompt: tuple[int, ...], n_vocab: int) -> list[int]:
    """A prompt given as token ids, as a list; an id outside the vocabulary is a 400."""
    bad = [t for t in prompt if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequest(TOKEN_OUTSIDE_VOCAB.format(token=bad[0]), param="prompt")
    return list(prompt)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of one row of raw logits (a new array; `logits` is left as it is)."""
    shifted = logits - logits.max()
    shifted -= np.log(np.exp(shifted).sum())
    return shifted


def token_logprob(logprobs: np.ndarray, token: int, piece: bytes, top: int, text: Callable[[int], bytes]) -> TokenLogprob:
    """The sampled token's log probability and the `top` most likely tokens at that step."""
    alternatives: list[tuple[str, float, list[int]]] = []
    if top:
        best = np.argpartition(logprobs, -top)[-top:]
        for t in best[np.argsort(-logprobs[best])]:
            p = text(int(t))
            alternatives.append((p.decode("utf-8", "replace"), float(logprobs[t]), list(p)))
    return TokenLogprob(
        token=piece.decode("utf-8", "replace"), logprob=float(logprobs[token]), bytes=list(piece), top=alternatives
    )


def checked_logit_bias(bias: Mapping[int, float], n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenAI's logit_bias as (token ids, values); a token outside the vocabulary is a 400."""
    bad = [t for t in bias if not 0 <= int(t) < n_vocab]
    if bad:
        raise InvalidRequest(BIAS_OUTSIDE_VOCAB.format(token=bad[0]), param="logit_bias")
    ids = np.fromiter((int(t) for t in bias), dtype=np.intc)
    values = np.fromiter((float(v) for v in bias.values()), dtype=np.single)
    return ids, values


# ggml's log levels (ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT) as Python's. llama.cpp's warnings
# are mostly notes ("n_ctx_seq < n_ctx_train"), so they log at INFO; its INFO lines at DEBUG.
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}
_log_state = {"level": logging.DEBUG, "callback": None}


def route_llama_logs() -> None:
    """Send llama.cpp's log lines to the `llama_cpp` logger at the right levels, once per process
    (llama-cpp-python's own callback maps newer ggml levels wrongly and prints warnings to stderr)."""
    if _log_state["callback"] is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != 5:
            _log_state["level"] = _LOG_LEVELS.get(level, logging.DEBUG)
        if logger.isEnabledFor(_log_state["level"]):
            line = text.decode("utf-8", "replace").rstrip()
            if line:
                logger.log(_log_state["level"], "%s", line)

    _log_state["callback"] = callback  # kept alive: llama.cpp holds a pointer to it
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _keep_stdout_stderr()


class _NoRedirect:
    """Stands in for llama-cpp-python's `suppress_stdout_stderr`, which points file descriptors 1
    and 2 at /dev/null for the whole process while a model loads: every other thread's log lines
    (another model's "Unloaded", the access log) were lost meanwhile. llama.cpp's own lines come
    through the callback above, so there is nothing left for it to hide."""

    def __init__(self, disable: bool = True):
        pass

    def __enter__(self) -> "_NoRedirect":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _keep_stdout_stderr() -> None:
    from llama_cpp import _internals, llama, llama_chat_format

    for module in (_internals, llama, llama_chat_format):
        module.suppress_stdout_stderr = _NoRedirect
