"""MLX models through mlx-lm (Metal on Apple Silicon, `mlx[cpu]` elsewhere): chat and completions.

An MLX model directory (config.json, *.safetensors, the tokenizer files) is loaded with
`mlx_lm.load`; prompts come from the tokenizer's chat template; decoding runs on mlx-lm's
`BatchGenerator` (mlx_decode.py), one sequence per choice; structured output and tool calls are
the constraint layer's compiled matchers inside Outlines' llguidance processor (mlx_constraints.py).
Everything here runs on the model's owner thread: mlx streams are thread-local, and Metal asserts
when two threads use one model.
https://github.com/ml-explore/mlx-lm
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from llmservice.errors import ContextLengthExceeded, InternalError, InvalidRequest, ModelUnavailable, UnsupportedParameter

from ..constraints import ConstraintCompiler, ToolCalls, detect_tool_format
from ..events import Event, Started, Thinking
from ..llamacpp_common import (  # the same messages on every chat backend
    CONTEXT_EXCEEDED, TEMPLATE_REJECTED, UNPREPARED, checked_token_ids, compile_limits,
)
from ..params import GenerationRequest, ModelSpec
from ..thinking import NO_SWITCH, thinking_state, thinking_switch, thinking_tags

if TYPE_CHECKING:
    from .mlx_prompt_cache import MlxPromptCache

logger = logging.getLogger(__name__)

DEFAULT_N_CTX = 2048
PREFILL_STEP = 512  # prompt tokens per forward pass while prefilling (a long prompt stalls the batch less)


def mlx_model_problem(path: str) -> str | None:
    """Why `path` is not an MLX model directory mlx-lm can load, or None."""
    if not path:
        return "no model path is set"
    directory = Path(path)
    if not directory.is_dir():
        return f"MLX model directory not found: {path}"
    if not (directory / "config.json").is_file():
        return f"not an MLX model directory (no config.json): {path}"
    if not any(directory.glob("*.safetensors")):
        return f"not an MLX model directory (no .safetensors weights): {path}"
    if not ((directory / "tokenizer.json").is_file() or (directory / "tokenizer.model").is_file()):
        return f"not an MLX model directory (no tokenizer.json): {path}"
    if not os.access(directory / "config.json", os.R_OK):
        return f"model directory is not readable: {path}"
    return None


class MlxBackend:
    """One mlx-lm model and tokenizer, used only from its owner thread."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, *, parallel: int = 1,
                 prompt_cache: "MlxPromptCache | None" = None):
        import mlx.core as mx

        from .mlx_constraints import llg_tokenizer
        from .mlx_decode import MlxDecoder

        self.spec = spec
        self._model = model
        self._tokenizer = tokenizer
        self._n_ctx = int(spec.load.get("n_ctx") or DEFAULT_N_CTX)
        llg = llg_tokenizer(model, tokenizer)
        n_vocab = llg.vocab_size
        self._n_vocab = max(n_vocab, int(model.args.vocab_size) if hasattr(model, "args") else n_vocab)
        specials = frozenset(t for t in range(n_vocab) if llg.is_special_token(t))
        pieces = [llg.decode_bytes([t]) for t in range(n_vocab)]
        pieces += [b""] * (self._n_vocab - n_vocab)  # padding rows of the embedding matrix
        self._eos = set(tokenizer.eos_token_ids or ()) | set(llg.eos_tokens)
        self.tool_format = detect_tool_format(tokenizer.chat_template)
        template = tokenizer.chat_template
        self.thinking_tags, self.thinking_switch = thinking_tags(template), thinking_switch(template)
        self.constraint_compiler = ConstraintCompiler(
            llg, n_vocab=n_vocab, tool_format=self.tool_format, limits=compile_limits()
        )
        self.decoder = MlxDecoder(
            model, eos=self._eos, pieces=pieces, specials=specials, n_vocab=self._n_vocab, parallel=parallel,
            prefill_step_size=PREFILL_STEP, stream=mx.new_stream(mx.default_device()), prompt_cache=prompt_cache,
        )

    # --- Backend protocol -----------------------------------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        problem = mlx_model_problem(spec.model_path)
        return [problem] if problem else []

    @classmethod
    def load(cls, spec: ModelSpec, *, parallel: int = 1, prompt_cache: "MlxPromptCache | None" = None) -> "MlxBackend":
        """`prompt_cache`: an `MlxPromptCache` for prompt reuse (None: every prompt is prefilled whole)."""
        problems = cls.check(spec)
        if problems:
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
        try:
            from mlx_lm import load
        except ImportError as exc:  # pragma: no cover - install problem
            raise ModelUnavailable(f"mlx-lm is not installed: {exc}.") from exc
        try:
            model, tokenizer = load(spec.model_path)
        except (ValueError, RuntimeError, OSError, KeyError) as exc:
            raise ModelUnavailable(f"Model '{spec.name}' failed to load: {exc}.") from exc
        return cls(spec, model, tokenizer, parallel=parallel, prompt_cache=prompt_cache)

    def close(self) -> None:
        import mlx.core as mx

        self.decoder.close()
        self._model = None
        gc.collect()
        mx.clear_cache()

    def generate(self, request: GenerationRequest, should_stop: Callable[[], bool]) -> Iterator[Event]:
        """One choice, alone in the batch: Started, Deltas, Finished."""
        events: list[Event] = []
        started, sequence = self.begin(request, index=0, emit=events.append)
        yield started
        decoder = self.decoder
        while sequence.reason is None:
            if should_stop():
                decoder.cancel(sequence)
            else:
                decoder.step()
            yield from events
            events.clear()
        if sequence.error is not None:
            raise sequence.error

    # --- shared with the batched engine ------------------------------------------------------
    def begin(self, request: GenerationRequest, *, index: int, emit: Callable[[Event], None]):
        """Check and tokenize the prompt and queue choice `index` of it: (Started, its sequence)."""
        compiled = request.compiled
        if request.constraint is not None and compiled is None:
            raise InternalError(UNPREPARED)
        tokens, stops, param, echo, thinking = self._prompt(request)
        if len(tokens) >= self._n_ctx:
            raise ContextLengthExceeded(
                CONTEXT_EXCEEDED.format(n_ctx=self._n_ctx, param=param, count=len(tokens)), param=param
            )
        budget = self._n_ctx - len(tokens)
        if request.sampling.max_tokens is not None:
            budget = min(budget, request.sampling.max_tokens)
        sampling = request.choice(index).sampling if request.n > 1 else request.sampling
        sequence = self.decoder.start(
            tokens, sampling, index=index, emit=emit, budget=budget, stops=stops, compiled=compiled
        )
        relaxed = tuple(str(r) for r in compiled.relaxed) if compiled else ()
        started = Started(
            prompt_tokens=len(tokens), echo=echo, tool_format=self.tool_format.name, relaxed=relaxed, thinking=thinking
        )
        return started, sequence

    def _prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], str, str | None, Thinking | None]:
        tokenizer = self._tokenizer
        stops = list(request.sampling.stop)
        if request.messages is not None:
            calls = request.constraint if isinstance(request.constraint, ToolCalls) else None
            messages, tools = self.tool_format.render(request.messages, calls)
            switch: dict[str, bool] = {}
            if request.thinking is not None:  # reasoning_effort: the template's switch, as llamacpp.py does
                if self.thinking_switch is None:
                    raise UnsupportedParameter(NO_SWITCH, param="reasoning_effort")
                switch[self.thinking_switch] = request.thinking
            try:
                text = tokenizer.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=True, tokenize=False, **switch
                )
            except Exception as exc:  # the template's own raise_exception(), or a Jinja error
                raise InvalidRequest(TEMPLATE_REJECTED.format(error=exc), param="messages") from exc
            thinking = thinking_state(self.thinking_tags, text)
            return tokenizer.encode(text, add_special_tokens=False), stops, "messages", None, thinking
        prompt = request.prompt
        if isinstance(prompt, tuple):
            tokens = checked_token_ids(prompt, self._n_vocab)
            text = tokenizer.decode(tokens)
        else:
            text = prompt or ""
            tokens = tokenizer.encode(text)
        if not tokens:  # mlx-lm refuses an empty prompt; start from the beginning of a text
            tokens = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else next(iter(self._eos))]
        return tokens, stops, "prompt", text if request.echo else None, None
