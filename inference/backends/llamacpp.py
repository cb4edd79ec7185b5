"""GGUF models through llama-cpp-python: the chat template from the GGUF, our own decode loop.

We drive `Llama.generate()` (the engine's sampler chain, KV prefix reuse) and do the text side
ourselves (`TextAssembler`): O(1) per token, exact stop strings, logprobs without `logits_all`,
and a cancellation check between every two tokens. Structured output and tool calls are
llguidance matchers (`inference.constraints`) masking the logits, as the last logits processor
before the engine's samplers; the tokenizer they need is built once, at load.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
from typing import Any, Callable, Iterator, Literal, get_args

import numpy as np

from django.conf import settings

from llmservice.errors import ContextLengthExceeded, InternalError, InvalidRequest, ModelUnavailable, UnsupportedParameter

from ..constraints import CompileLimits, ConstraintCompiler, DuplicateCallGuard, Matcher, ToolCalls, detect_tool_format
from ..constraints.tool_formats import GENERIC
from ..decoding import TextAssembler
from ..engines.serial import SerialEngine
from ..events import Delta, Event, Finished, Started, Thinking, TokenLogprob
from ..gguf import gguf_problem
from ..options import EngineOptions, option, options_load
from ..params import GenerationRequest, ModelSpec, SamplingParams
from ..thinking import NO_SWITCH, thinking_state, thinking_switch, thinking_tags

logger = logging.getLogger(__name__)

UNPREPARED = "A constrained request reached the model without its compiled constraint."
# Named chat formats a tier may force instead of the GGUF's own template.
ChatFormat = Literal["chatml", "llama-2", "llama-3", "mistral-instruct", "gemma", "qwen", "zephyr"]
CHAT_FORMATS = get_args(ChatFormat)


class LlamaCppOptions(EngineOptions):
    """Load options of a llama.cpp tier; unset ones take the global N_CTX, N_GPU_LAYERS, ... settings."""

    n_ctx: int = option(2048, setting="N_CTX", ge=16, description="Context window in tokens.")
    n_gpu_layers: int = option(0, setting="N_GPU_LAYERS", ge=-1, description="Layers offloaded to a GPU (-1: all).")
    n_threads: int | None = option(
        None, setting="N_THREADS", ge=0, description="CPU threads (0: llama.cpp's choice)."
    )
    n_batch: int = option(512, setting="N_BATCH", ge=1, description="Prompt tokens evaluated per batch.")
    chat_format: ChatFormat | None = option(None, description="A named chat format instead of the GGUF's own template.")


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


class LlamaCppBackend:
    """One `llama_cpp.Llama` instance, used only from its owner thread."""

    def __init__(self, spec: ModelSpec, llama: Any):
        import llama_cpp

        self.spec = spec
        self._llama = llama
        self._lib = llama_cpp
        self._vocab = llama._model.vocab
        self._n_ctx = llama.n_ctx()
        self._piece_buf = ctypes.create_string_buffer(64)
        self._formatter, self._stop_token_ids = self._chat_formatter(spec.load.get("chat_format"))
        template = None if spec.load.get("chat_format") else llama.metadata.get("tokenizer.chat_template")
        self.tool_format = detect_tool_format(template) if template else GENERIC
        self.thinking_tags, self.thinking_switch = thinking_tags(template), thinking_switch(template)
        self.constraint_compiler = ConstraintCompiler(
            self._constraint_tokenizer(), n_vocab=llama.n_vocab(), tool_format=self.tool_format, limits=compile_limits()
        )

    # --- Backend protocol -----------------------------------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
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

    @classmethod
    def load(cls, spec: ModelSpec) -> "LlamaCppBackend":
        problems = cls.check(spec)
        if problems:
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
        options = options_load(LlamaCppOptions, spec)
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - install problem
            raise ModelUnavailable(f"llama-cpp-python is not installed: {exc}.") from exc
        try:
            llama = Llama(
                model_path=spec.model_path,
                n_ctx=options.n_ctx,
                n_batch=options.n_batch,
                n_threads=options.n_threads or None,
                n_gpu_layers=options.n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc
        return cls(spec, llama)

    def close(self) -> None:
        self._llama.close()

    def generate(
        self, request: GenerationRequest, should_stop: Callable[[], bool]
    ) -> Iterator[Event]:
        compiled = request.compiled
        if request.constraint is not None and compiled is None:
            raise InternalError(UNPREPARED)
        tokens, stops, param, echo, thinking = self._prompt(request)
        if len(tokens) >= self._n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._n_ctx} tokens. However, your "
                f"{param} resulted in {len(tokens)} tokens. Please reduce the length of the {param}.",
                param=param,
            )
        processors, recorder = self._logits_processors(request.sampling)
        constraint = None
        if compiled is not None:
            constraint = _Constraint(compiled.matcher(), compiled.guard(), compiled.preserved_tokens)
            processors = [*(processors or []), constraint.mask]  # last: what it allows is final
        relaxed = tuple(str(r) for r in compiled.relaxed) if compiled else ()
        yield Started(prompt_tokens=len(tokens), echo=echo, tool_format=self.tool_format.name, relaxed=relaxed,
                      thinking=thinking)
        yield from self._decode(tokens, request.sampling, stops, processors, recorder, should_stop, constraint)

    def _constraint_tokenizer(self):
        """llguidance's view of the vocabulary; every end-of-generation token counts as its EOS."""
        from llguidance.llamacpp import lltokenizer_from_vocab

        lib, vocab = self._lib, self._vocab
        eog = [t for t in range(lib.llama_vocab_n_tokens(vocab)) if lib.llama_vocab_is_eog(vocab, t)]
        return lltokenizer_from_vocab(vocab, eos_token=eog or None)

    # --- prompt ---------------------------------------------------------------------------
    def _chat_formatter(self, chat_format: str | None):
        if chat_format:
            return _named_formatter(chat_format), set()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata = self._llama.metadata
        template = metadata.get("tokenizer.chat_template")
        if not template:
            return _named_formatter("chatml"), set()
        eos_id = self._llama.token_eos()
        bos_id = self._llama.token_bos()
        text = self._llama._model.token_get_text
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=text(eos_id) if eos_id != -1 else "",
            bos_token=text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        return formatter, {eos_id}

    def _prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], str, str | None, Thinking | None]:
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
                raise InvalidRequest(
                    f"The model's chat template rejected these messages: {exc}", param="messages"
                ) from exc
            tokens = self._llama.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            template_stops = result.stop if isinstance(result.stop, list) else [result.stop]
            thinking = thinking_state(self.thinking_tags, result.prompt)
            return tokens, stops + [s for s in template_stops if s], "messages", None, thinking
        prompt = request.prompt
        if isinstance(prompt, tuple):
            tokens = list(prompt)
            bad = [t for t in tokens if not 0 <= t < self._llama.n_vocab()]
            if bad:
                raise InvalidRequest(f"Token id {bad[0]} is outside the vocabulary.", param="prompt")
            text = self._llama.detokenize(tokens).decode("utf-8", "replace")
        else:
            text = prompt or ""
            tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return tokens, stops, "prompt", text if request.echo else None, None

    # --- decode loop ------------------------------------------------------------------------
    def _decode(
        self,
        tokens: list[int],
        sampling: SamplingParams,
        stops: list[str],
        processors: list | None,
        recorder: "_LogprobRecorder | None",
        should_stop: Callable[[], bool],
        constraint: "_Constraint | None" = None,
    ) -> Iterator[Event]:
        llama, lib = self._llama, self._lib
        budget = self._n_ctx - len(tokens)
        if sampling.max_tokens is not None:
            budget = min(budget, sampling.max_tokens)
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(32))
        assembler: TextAssembler[TokenLogprob] = TextAssembler(stops)
        matcher = constraint.matcher if constraint else None
        guard = constraint.guard if constraint else None
        preserved = constraint.preserved if constraint else frozenset()
        count, reason = 0, "length"
        generator = llama.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            logits_processor=processors,
        )
        try:
            for token in generator:
                if should_stop():
                    reason = "cancelled"
                    break
                if matcher is not None and not matcher.consume(token):
                    raise matcher.failure()
                if token in self._stop_token_ids or lib.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                count += 1
                piece = self._piece(token, token in preserved)
                logprob = recorder.entry(token, piece) if recorder else None
                text, released = assembler.feed(piece, logprob)
                yield from _deltas(text, released, guard)
                if assembler.stopped or (guard is not None and guard.stopped):
                    reason = "stop"
                    break
                if matcher is not None and matcher.is_stopped():
                    reason = "stop"  # the output is complete: nothing but the end may follow
                    break
                if count >= budget:
                    break
        finally:
            generator.close()
        if reason != "cancelled":
            text, released = assembler.flush()
            yield from _deltas(text, released, guard, final=True)
        yield Finished(reason=reason, prompt_tokens=len(tokens), completion_tokens=count)

    def _piece(self, token: int, special: bool = False) -> bytes:
        """The token's text; a special token's only when `special` (a tool-call marker)."""
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            self._piece_buf = buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _logits_processors(self, sampling: SamplingParams):
        processors = []
        recorder = None
        if sampling.logprobs:
            recorder = _LogprobRecorder(sampling.top_logprobs, self._piece)
            processors.append(recorder)
        if sampling.logit_bias:
            processors.append(_logit_bias(sampling.logit_bias, self._llama.n_vocab()))
        return (processors or None), recorder


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


class _Constraint:
    """One sequence's constraint in this loop: its matcher (as a logits processor), its guard."""

    __slots__ = ("matcher", "guard", "preserved")

    def __init__(self, matcher: Matcher, guard: DuplicateCallGuard | None, preserved: frozenset[int]):
        self.matcher = matcher
        self.guard = guard
        self.preserved = preserved

    def mask(self, input_ids, scores):
        # Called by llama.cpp's sampler through ctypes: it must not raise (a failure masks all but
        # the end, and the loop reports it when the token comes back).
        return self.matcher.apply(scores)


def _deltas(text: str, released: list, guard: DuplicateCallGuard | None, final: bool = False) -> Iterator[Delta]:
    pieces = [(text, released)] if guard is None else guard.feed(text, released) + (guard.flush() if final else [])
    for piece, logprobs in pieces:
        if piece or logprobs:
            yield Delta(piece, logprobs or None)


def _logit_bias(bias: dict[int, float], n_vocab: int):
    bad = [t for t in bias if not 0 <= int(t) < n_vocab]
    if bad:
        raise InvalidRequest(f"logit_bias token id {bad[0]} is outside the vocabulary.", param="logit_bias")
    ids = np.fromiter((int(t) for t in bias), dtype=np.intc)
    values = np.fromiter((float(v) for v in bias.values()), dtype=np.single)

    def apply(input_ids, scores):
        # OpenAI's -100/100 ban or force a token; in between they nudge it.
        scores[ids] += values
        return scores

    return apply


class _LogprobRecorder:
    """A logits processor that keeps the log-softmax of the raw logits of each step."""

    def __init__(self, top: int, piece: Callable[[int], bytes]):
        self._top = top
        self._piece = piece
        self._last: np.ndarray | None = None

    def __call__(self, input_ids, scores):
        shifted = scores - scores.max()
        self._last = shifted - np.log(np.exp(shifted).sum())
        return scores

    def entry(self, token: int, piece: bytes) -> TokenLogprob:
        logprobs = self._last
        top: list[tuple[str, float, list[int]]] = []
        if self._top:
            best = np.argpartition(logprobs, -self._top)[-self._top :]
            for t in best[np.argsort(-logprobs[best])]:
                p = self._piece(int(t))
                top.append((p.decode("utf-8", "replace"), float(logprobs[t]), list(p)))
        return TokenLogprob(
            token=piece.decode("utf-8", "replace"),
            logprob=float(logprobs[token]),
            bytes=list(piece),
            top=top,
        )


class LlamaCppEngine(SerialEngine):
    """llama.cpp chat tiers, one request at a time (`LlamaCppBackend` under the engine contract)."""

    backend = LlamaCppBackend
    kinds = frozenset({"chat"})
    options = LlamaCppOptions
