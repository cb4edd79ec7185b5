"""GGUF models through llama-cpp-python: the chat template from the GGUF, our own decode loop.

We drive `Llama.generate()` (the engine's sampler chain, KV prefix reuse) and do the text side
ourselves (`TextAssembler`): O(1) per token, exact stop strings, logprobs without `logits_all`,
and a cancellation check between every two tokens. Structured output and tool calls are
llguidance matchers (`inference.constraints`) masking the logits, as the last logits processor
before the engine's samplers; the tokenizer they need is built once, at load.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Iterator

from llmservice.errors import InternalError, ModelUnavailable

from .. import llama_threads
from ..decoding import TextAssembler
from ..engines.serial import SerialEngine
from ..events import Event, Finished, Started, TokenLogprob
from ..llamacpp_common import (
    UNPREPARED, LlamaCppOptions, PromptBuilder, SequenceConstraint, TokenText, checked_logit_bias, constraint_compiler,
    deltas, log_softmax, route_llama_logs, spec_problems, token_logprob,
)
from ..options import options_load
from ..params import GenerationRequest, ModelSpec, SamplingParams

logger = logging.getLogger(__name__)


class LlamaCppBackend:
    """One `llama_cpp.Llama` instance, used only from its owner thread."""

    def __init__(self, spec: ModelSpec, llama: Any):
        import llama_cpp

        self.spec = spec
        self._llama = llama
        self._lib = llama_cpp
        self._vocab = llama._model.vocab
        self._n_ctx = llama.n_ctx()
        self._piece = TokenText(self._vocab)
        self._prompts = PromptBuilder(llama._model, spec.load.get("chat_format"))
        self._stop_token_ids = self._prompts.stop_token_ids
        self.constraint_compiler = constraint_compiler(self._vocab, llama.n_vocab(), self._prompts)

    @property
    def tool_format(self):
        """How this model writes tool calls (from its chat template)."""
        return self._prompts.tool_format

    # --- Backend protocol -----------------------------------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        return spec_problems(spec)

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
        route_llama_logs()
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
        try:
            llama_threads.attach_llama(llama)
        except MemoryError as exc:
            llama.close()
            raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc
        return cls(spec, llama)

    def close(self) -> None:
        llama_threads.close_llama(self._llama)

    def generate(
        self, request: GenerationRequest, should_stop: Callable[[], bool]
    ) -> Iterator[Event]:
        compiled = request.compiled
        if request.constraint is not None and compiled is None:
            raise InternalError(UNPREPARED)
        prompt = self._prompts.build(request)
        prompt.check_fits(self._n_ctx)
        tokens, stops, echo = prompt.tokens, prompt.stops, prompt.echo
        processors, recorder = self._logits_processors(request.sampling)
        constraint = None
        if compiled is not None:
            constraint = SequenceConstraint(compiled)
            processors = [*(processors or []), constraint.mask]  # last: what it allows is final
        relaxed = tuple(str(r) for r in compiled.relaxed) if compiled else ()
        yield Started(prompt_tokens=len(tokens), echo=echo, tool_format=self.tool_format.name, relaxed=relaxed,
                      thinking=prompt.thinking)
        yield from self._decode(tokens, request.sampling, stops, processors, recorder, should_stop, constraint)

    # --- decode loop ------------------------------------------------------------------------
    def _decode(
        self,
        tokens: list[int],
        sampling: SamplingParams,
        stops: list[str],
        processors: list | None,
        recorder: "_LogprobRecorder | None",
        should_stop: Callable[[], bool],
        constraint: "SequenceConstraint | None" = None,
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
                yield from deltas(text, released, guard)
                if assembler.stopped or (constraint is not None and constraint.stopped):
                    reason = "stop"  # a stop string, or the output is complete (nothing but the end may follow)
                    break
                if count >= budget:
                    break
        finally:
            generator.close()
        if reason != "cancelled":
            text, released = assembler.flush()
            yield from deltas(text, released, guard, final=True)
        yield Finished(reason=reason, prompt_tokens=len(tokens), completion_tokens=count)

    def _logits_processors(self, sampling: SamplingParams):
        processors = []
        recorder = None
        if sampling.logprobs:
            recorder = _LogprobRecorder(sampling.top_logprobs, self._piece)
            processors.append(recorder)
        if sampling.logit_bias:
            processors.append(_logit_bias(sampling.logit_bias, self._llama.n_vocab()))
        return (processors or None), recorder


def _logit_bias(bias: dict[int, float], n_vocab: int):
    ids, values = checked_logit_bias(bias, n_vocab)

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
        self._last = None

    def __call__(self, input_ids, scores):
        self._last = log_softmax(scores)
        return scores

    def entry(self, token: int, piece: bytes) -> TokenLogprob:
        return token_logprob(self._last, token, piece, self._top, self._piece)


class LlamaCppEngine(SerialEngine):
    """llama.cpp chat tiers one request at a time (`LlamaCppBackend` under the engine contract):
    the `llamacpp_serial` backend. The `llamacpp` backend batches (engines/llamacpp_batched.py)."""

    backend = LlamaCppBackend
    kinds = frozenset({"chat"})
    options = LlamaCppOptions
