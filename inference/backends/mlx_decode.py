"""Many sequences decoding together on one MLX model, through mlx-lm's `BatchGenerator`.

mlx-lm does the model side (prefill, one batched forward pass per step, per-sequence samplers and
logits processors, the end-of-sequence tokens, `max_tokens`); the text side is ours, per sequence:
token bytes through `TextAssembler` (UTF-8 safe, exact stop strings), the tool-call guard,
logprobs, the constraint's end. `BatchGenerator` computes a step's next tokens before it returns
the current ones, so a constraint's matcher has consumed a token by the time we see it.

Prompt reuse: with a `MlxPromptCache`, a finished sequence's KV cache is kept and a new prompt is
inserted with a copy of the longest cached prefix, so only the rest is prefilled (mlx_prompt_cache.py).

Sampling: `mlx_lm.sample_utils.make_sampler` with keywords. mlx's random generator is global, so
a seeded sequence gets a sampler of its own with an explicit `mx.random` key (split every step):
seeded requests batch with any others and still give the same tokens as alone.
Every method runs on the model's owner thread (mlx streams are thread-local).
https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/generate.py
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, make_logits_processors, make_sampler

from llmservice.errors import InvalidRequest, ServiceError

from ..constraints import CompiledConstraint, DuplicateCallGuard
from ..decoding import TextAssembler
from ..events import Delta, Event, Finished, TokenLogprob
from ..params import SamplingParams
from .mlx_constraints import MlxConstraintProcessor
from .mlx_prompt_cache import MlxPromptCache

PENALTY_CONTEXT = 64  # tokens the repetition/presence/frequency penalties look back on (llama.cpp's default)
BIAS_OUT_OF_VOCABULARY = "logit_bias token id {token} is outside the vocabulary."


def mlx_sampler(sampling: SamplingParams):
    """The sequence's sampler: greedy at temperature 0; its own random key when seeded."""
    if sampling.temperature <= 0:
        return make_sampler(temp=0.0)
    top_p = sampling.top_p if 0 < sampling.top_p < 1 else 0.0
    if sampling.seed is None:
        return make_sampler(temp=sampling.temperature, top_p=top_p, min_p=sampling.min_p, top_k=sampling.top_k)
    key = mx.random.key(sampling.seed % (1 << 64))
    temp, min_p, top_k = sampling.temperature, sampling.min_p, sampling.top_k

    def seeded(logprobs: mx.array) -> mx.array:
        # make_sampler's chain (same filters, same order) with an explicit key instead of the global one.
        nonlocal key
        key, draw = mx.random.split(key)
        if top_p:
            logprobs = apply_top_p(logprobs, top_p)
        if min_p:
            logprobs = apply_min_p(logprobs, min_p)
        if top_k > 0:
            logprobs = apply_top_k(logprobs, top_k)
        return mx.random.categorical(logprobs * (1.0 / temp), key=draw)

    return seeded


def mlx_processors(sampling: SamplingParams, n_vocab: int) -> list:
    """Penalties and logit_bias as mlx-lm's logits processors (an off knob adds none)."""
    bias = None
    if sampling.logit_bias:
        bad = [t for t in sampling.logit_bias if not 0 <= int(t) < n_vocab]
        if bad:
            raise InvalidRequest(BIAS_OUT_OF_VOCABULARY.format(token=bad[0]), param="logit_bias")
        bias = {int(t): float(v) for t, v in sampling.logit_bias.items()}
    return make_logits_processors(
        logit_bias=bias,
        repetition_penalty=sampling.repeat_penalty if sampling.repeat_penalty not in (0.0, 1.0) else None,
        repetition_context_size=PENALTY_CONTEXT,
        presence_penalty=sampling.presence_penalty or None,
        presence_context_size=PENALTY_CONTEXT,
        frequency_penalty=sampling.frequency_penalty or None,
        frequency_context_size=PENALTY_CONTEXT,
    )


class _RawLogprobs:
    """First logits processor of a sequence asking for logprobs: keeps each step's log-softmax of
    the raw logits (before penalties, bias and constraint), in order; a step's token pops its own."""

    __slots__ = ("pending",)

    def __init__(self):
        self.pending: deque[mx.array] = deque()

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        self.pending.append(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        return logits


class MlxSequence:
    """One choice decoding in the batch: where its events go and what ends it."""

    __slots__ = (
        "uid", "index", "emit", "prompt_tokens", "budget", "assembler", "guard", "constraint", "preserved",
        "raw", "top", "count", "error", "reason", "owner",
    )

    def __init__(self, *, index: int, emit: Callable[[Event], None], prompt_tokens: int, budget: int, stops,
                 guard: DuplicateCallGuard | None, constraint: MlxConstraintProcessor | None,
                 preserved: frozenset[int], raw: _RawLogprobs | None, top: int):
        self.uid = -1
        self.index = index
        self.emit = emit
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.assembler: TextAssembler[TokenLogprob] = TextAssembler(stops)
        self.guard = guard
        self.constraint = constraint
        self.preserved = preserved
        self.raw = raw
        self.top = top
        self.count = 0
        self.error: ServiceError | None = None  # set when it ended with an error (its job fails)
        self.reason: str | None = None  # set once finished
        self.owner: object = None  # whoever started it (the engine's job)


class MlxDecoder:
    """The batch: `start()` sequences, `step()` them all, `cancel()` one. Owner thread only."""

    def __init__(self, model, *, eos: set[int], pieces: list[bytes], specials: frozenset[int], n_vocab: int,
                 parallel: int, prefill_step_size: int, stream=None, prompt_cache: MlxPromptCache | None = None):
        self._generator = BatchGenerator(
            model,
            stream=stream,
            stop_tokens=[[t] for t in sorted(eos)],
            completion_batch_size=parallel,
            prefill_batch_size=min(parallel, 8),
            prefill_step_size=prefill_step_size,
        )
        self._eos = eos
        self._pieces = pieces
        self._specials = specials
        self._n_vocab = n_vocab
        self._sequences: dict[int, MlxSequence] = {}
        self.prompt_cache = prompt_cache  # None: prompt reuse off
        self.counters = dict(steps=0, prompt_tokens=0, prompt_tokens_evaluated=0, prompt_tokens_reused=0)

    def active(self) -> int:
        return len(self._sequences)

    def start(self, tokens: list[int], sampling: SamplingParams, *, index: int, emit: Callable[[Event], None],
              budget: int, stops: list[str], compiled: CompiledConstraint | None) -> MlxSequence:
        """Queue one choice of a prompt (the prompt was checked against the context already)."""
        processors = mlx_processors(sampling, self._n_vocab)
        raw = _RawLogprobs() if sampling.logprobs else None
        constraint = None
        if compiled is not None:  # last: what it allows is final
            constraint = MlxConstraintProcessor(compiled.matcher(), compiled.compiler.n_vocab)
        sequence = MlxSequence(
            index=index, emit=emit, prompt_tokens=len(tokens), budget=budget, stops=stops,
            guard=compiled.guard() if compiled else None, constraint=constraint,
            preserved=compiled.preserved_tokens if compiled else frozenset(), raw=raw, top=sampling.top_logprobs,
        )
        chain = ([raw] if raw else []) + processors + ([constraint] if constraint else [])
        cache, reused = None, 0
        if self.prompt_cache is not None:
            with mx.stream(self._generator.stream):
                cache, reused = self.prompt_cache.fetch(tokens)
        (sequence.uid,) = self._generator.insert(
            [tokens[reused:]], max_tokens=[budget], caches=[cache], all_tokens=[tokens[:reused]],
            samplers=[mlx_sampler(sampling)], logits_processors=[chain],
        )
        counters = self.counters
        counters["prompt_tokens"] += len(tokens)
        counters["prompt_tokens_evaluated"] += len(tokens) - reused
        counters["prompt_tokens_reused"] += reused
        self._sequences[sequence.uid] = sequence
        return sequence

    def step(self) -> list[MlxSequence]:
        """One token for every running sequence (prefilling joiners first); the sequences now finished."""
        if not self._sequences:
            return []
        done = []
        responses = self._generator.next_generated()
        self.counters["steps"] += 1
        keep = self.prompt_cache is not None
        ended = {}  # uid -> (its KV cache, the tokens it holds) of the finished sequences, to keep
        for response in responses:
            if keep and response.finish_reason is not None and response.prompt_cache is not None:
                ended[response.uid] = (response.prompt_cache, response.all_tokens)  # mlx-lm ended it
            sequence = self._sequences.get(response.uid)
            if sequence is None:
                continue
            if self._advance(sequence, response.token, response.finish_reason):
                done.append(sequence)
        if done:  # mlx-lm already dropped those it ended itself (end of sequence, max_tokens): no-ops
            ended.update(self._generator.remove([s.uid for s in done], return_prompt_caches=keep))
            for sequence in done:
                del self._sequences[sequence.uid]
        if ended:
            with mx.stream(self._generator.stream):
                for cache, tokens in ended.values():
                    self.prompt_cache.store(tokens, cache)
        return done

    def cancel(self, sequence: MlxSequence, *, report: bool = True) -> None:
        """End it now; `report`: emit how far it got (Finished "cancelled")."""
        if self._sequences.pop(sequence.uid, None) is None:
            return
        self._generator.remove([sequence.uid])
        sequence.reason = "cancelled"
        if report:
            sequence.emit(Finished("cancelled", sequence.prompt_tokens, sequence.count, sequence.index))

    def close(self) -> None:
        if self._sequences:
            self._generator.remove(list(self._sequences))
            self._sequences.clear()
        if self.prompt_cache is not None:
            self.prompt_cache.clear()
        self._generator.close()

    # --- one token of one sequence --------------------------------------------------------------
    def _advance(self, sequence: MlxSequence, token: int, finish: str | None) -> bool:
        """Feed one sampled token; True when the sequence has ended (its Finished emitted)."""
        constraint = sequence.constraint
        if constraint is not None and constraint.failure is not None:
            sequence.error = constraint.failure
            sequence.reason = "error"
            return True
        if token in self._eos:
            return self._finish(sequence, "stop")
        sequence.count += 1
        special = token in self._specials
        piece = self._pieces[token] if not special or token in sequence.preserved else b""
        logprob = self._logprob(sequence, token, piece) if sequence.raw is not None else None
        text, released = sequence.assembler.feed(piece, logprob)
        self._emit(sequence, text, released)
        if sequence.assembler.stopped or (sequence.guard is not None and sequence.guard.stopped):
            return self._finish(sequence, "stop")
        if constraint is not None and constraint.matcher.is_stopped():
            return self._finish(sequence, "stop")  # complete: nothing but the end may follow
        if finish == "length" or sequence.count >= sequence.budget:
            return self._finish(sequence, "length")
        return False

    def _finish(self, sequence: MlxSequence, reason: str) -> bool:
        sequence.reason = reason
        text, released = sequence.assembler.flush()
        self._emit(sequence, text, released, final=True)
        sequence.emit(Finished(reason, sequence.prompt_tokens, sequence.count, sequence.index))
        return True

    def _emit(self, sequence: MlxSequence, text: str, released: list, final: bool = False) -> None:
        guard = sequence.guard
        pieces = [(text, released)] if guard is None else guard.feed(text, released) + (guard.flush() if final else [])
        for piece, logprobs in pieces:
            if piece or logprobs:
                sequence.emit(Delta(piece, logprobs or None, sequence.index))

    def _logprob(self, sequence: MlxSequence, token: int, piece: bytes) -> TokenLogprob:
        row = np.array(sequence.raw.pending.popleft()[0], dtype=np.float32)
        top: list[tuple[str, float, list[int]]] = []
        if sequence.top:
            best = np.argpartition(row, -sequence.top)[-sequence.top:]
            for t in best[np.argsort(-row[best])]:
                p = self._pieces[int(t)]
                top.append((p.decode("utf-8", "replace"), float(row[t]), list(p)))
        return TokenLogprob(token=piece.decode("utf-8", "replace"), logprob=float(row[token]), bytes=list(piece), top=top)
