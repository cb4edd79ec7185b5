"""GGUF models through llama-cpp-python: the chat template from the GGUF, our own decode loop.

We drive `Llama.generate()` (the engine's sampler chain, KV prefix reuse, grammar) and do the
text side ourselves (`TextAssembler`): O(1) per token, exact stop strings, logprobs without
`logits_all`, and a cancellation check between every two tokens.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
from typing import Any, Callable, Iterator

import numpy as np

from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable, UnsupportedParameter

from ..decoding import TextAssembler
from ..events import Delta, Event, Finished, Started, TokenLogprob
from ..gguf import gguf_problem
from ..grammar import json_gbnf
from ..params import Constraint, GenerationRequest, JsonOutput, ModelSpec, SamplingParams
from ..tools import tool_gbnf

logger = logging.getLogger(__name__)

# Named chat formats a tier may force instead of the GGUF's own template.
CHAT_FORMATS = ("chatml", "llama-2", "llama-3", "mistral-instruct", "gemma", "qwen", "zephyr")


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
        chat_format = spec.load.get("chat_format")
        if chat_format and chat_format not in CHAT_FORMATS:
            problems.append(f"unknown chat_format '{chat_format}' (one of {', '.join(CHAT_FORMATS)})")
        return problems

    @classmethod
    def load(cls, spec: ModelSpec) -> "LlamaCppBackend":
        problems = cls.check(spec)
        if problems:
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - install problem
            raise ModelUnavailable(f"llama-cpp-python is not installed: {exc}.") from exc
        load = spec.load
        try:
            llama = Llama(
                model_path=spec.model_path,
                n_ctx=load.get("n_ctx") or 2048,
                n_batch=load.get("n_batch") or 512,
                n_threads=load.get("n_threads") or None,
                n_gpu_layers=load.get("n_gpu_layers") or 0,
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
        tokens, stops, param, echo = self._prompt(request)
        if len(tokens) >= self._n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._n_ctx} tokens. However, your "
                f"{param} resulted in {len(tokens)} tokens. Please reduce the length of the {param}.",
                param=param,
            )
        processors, recorder = self._logits_processors(request.sampling)
        grammar = self._grammar(request.constraint)
        yield Started(prompt_tokens=len(tokens), echo=echo)
        yield from self._decode(tokens, request.sampling, stops, processors, recorder, should_stop, grammar)

    def _grammar(self, constraint: Constraint | None):
        """The constraint as a llama.cpp grammar, parsed once here so a bad one is a 400, not a crash."""
        if constraint is None:
            return None
        from llama_cpp import LlamaGrammar

        if isinstance(constraint, JsonOutput):
            text, param = json_gbnf(constraint.schema), "response_format"
        else:
            text, param = tool_gbnf(constraint), "tools"
        probe = self._lib.llama_sampler_init_grammar(self._vocab, text.encode("utf-8"), b"root")
        if not probe:
            logger.error("llama.cpp rejected a generated grammar:\n%s", text)
            raise UnsupportedParameter(f"The {param} constraint could not be compiled to a grammar.", param=param)
        self._lib.llama_sampler_free(probe)
        return LlamaGrammar.from_string(text)

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

    def _prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], str, str | None]:
        stops = list(request.sampling.stop)
        if request.messages is not None:
            try:
                result = self._formatter(messages=[m.as_template_dict() for m in request.messages])
            except Exception as exc:  # the template's own raise_exception(), or a Jinja error
                raise InvalidRequest(
                    f"The model's chat template rejected these messages: {exc}", param="messages"
                ) from exc
            tokens = self._llama.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            template_stops = result.stop if isinstance(result.stop, list) else [result.stop]
            return tokens, stops + [s for s in template_stops if s], "messages", None
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
        return tokens, stops, "prompt", text if request.echo else None

    # --- decode loop ------------------------------------------------------------------------
    def _decode(
        self,
        tokens: list[int],
        sampling: SamplingParams,
        stops: list[str],
        processors: list | None,
        recorder: "_LogprobRecorder | None",
        should_stop: Callable[[], bool],
        grammar: Any = None,
    ) -> Iterator[Event]:
        llama, lib = self._llama, self._lib
        budget = self._n_ctx - len(tokens)
        if sampling.max_tokens is not None:
            budget = min(budget, sampling.max_tokens)
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(32))
        assembler: TextAssembler[TokenLogprob] = TextAssembler(stops)
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
            grammar=grammar,
        )
        try:
            for token in generator:
                if should_stop():
                    reason = "cancelled"
                    break
                if token in self._stop_token_ids or lib.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                count += 1
                piece = self._piece(token)
                logprob = recorder.entry(token, piece) if recorder else None
                text, released = assembler.feed(piece, logprob)
                if text or released:
                    yield Delta(text, released or None)
                if assembler.stopped:
                    reason = "stop"
                    break
                if count >= budget:
                    break
        finally:
            generator.close()
        if reason != "cancelled":
            text, released = assembler.flush()
            if text or released:
                yield Delta(text, released or None)
        yield Finished(reason=reason, prompt_tokens=len(tokens), completion_tokens=count)

    def _piece(self, token: int) -> bytes:
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            self._piece_buf = buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
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

