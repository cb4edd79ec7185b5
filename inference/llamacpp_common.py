"""What every llama.cpp engine shares: the model checks, the prompt (chat template, tokens,
stops), token text and logprobs.

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
from typing import Any, Callable, Mapping

import numpy as np

from llmservice.errors import ContextLengthExceeded, InvalidRequest

from .events import TokenLogprob
from .gguf import gguf_problem
from .params import GenerationRequest, ModelSpec

logger = logging.getLogger("llama_cpp")

# Named chat formats a tier may force instead of the GGUF's own template.
CHAT_FORMATS = ("chatml", "llama-2", "llama-3", "mistral-instruct", "gemma", "qwen", "zephyr")
TEMPLATE_REJECTED = "The model's chat template rejected these messages: {error}"
TOKEN_OUTSIDE_VOCAB = "Token id {token} is outside the vocabulary."
BIAS_OUTSIDE_VOCAB = "logit_bias token id {token} is outside the vocabulary."
CONTEXT_EXCEEDED = (
    "This model's maximum context length is {n_ctx} tokens. However, your {param} resulted in {count} "
    "tokens. Please reduce the length of the {param}."
)


def spec_problems(spec: ModelSpec) -> list[str]:
    """What would stop a GGUF tier from loading: the file, its header, the chat format."""
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
            try:
                result = self._formatter(messages=[m.as_template_dict() for m in request.messages])
            except Exception as exc:  # the template's own raise_exception(), or a Jinja error
                raise InvalidRequest(TEMPLATE_REJECTED.format(error=exc), param="messages") from exc
            tokens = self.tokenize(result.prompt, add_bos=not result.added_special)
            template_stops = result.stop if isinstance(result.stop, list) else [result.stop]
            return Prompt(tokens, stops + [s for s in template_stops if s], "messages", None)
        prompt = request.prompt
        if isinstance(prompt, tuple):
            tokens = list(prompt)
            bad = [t for t in tokens if not 0 <= t < self.n_vocab]
            if bad:
                raise InvalidRequest(TOKEN_OUTSIDE_VOCAB.format(token=bad[0]), param="prompt")
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

    def __call__(self, token: int) -> bytes:
        buf = self._buf
        n = self._to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            self._buf = buf = ctypes.create_string_buffer(-n)
            n = self._to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]


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
