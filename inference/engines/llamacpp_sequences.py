"""One choice decoding in the batched llama.cpp engine: its sampler chain, its text, its events.

A `Slot` is one llama.cpp sequence id with the tokens its KV cells hold (kept after it finishes,
so a later prompt that starts the same way reuses them). A `Decoding` is one choice of one job
running in a slot: it prefills what of the prompt the slot lacks, then samples one token per
step with its own sampler chain (llama.cpp's samplers, in the order llama-cpp-python's
`Llama.generate` uses), and turns tokens into `Delta`/`Finished` events through `TextAssembler`.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np

from ..decoding import TextAssembler
from ..events import Finished, FinishReason, TokenLogprob
from ..llamacpp_common import Prompt, SequenceConstraint, deltas, token_logprob
from ..params import SamplingParams

PENALTY_LAST_N = 64  # llama-cpp-python's default window for the repeat/presence/frequency penalties


class Slot:
    """A llama.cpp sequence id and the tokens in its KV cells (positions 0..len-1)."""

    __slots__ = ("seq", "tokens", "decoding", "last_used")

    def __init__(self, seq: int):
        self.seq = seq
        self.tokens: list[int] = []
        self.decoding: Decoding | None = None
        self.last_used = 0

    def common_prefix(self, tokens: np.ndarray) -> int:
        """How many leading `tokens` this slot's cells already hold."""
        m = min(len(self.tokens), len(tokens))
        if not m:
            return 0
        differ = np.flatnonzero(np.asarray(self.tokens[:m], dtype=np.int32) != tokens[:m])
        return int(differ[0]) if differ.size else m


def sampler_chain(lib: Any, n_vocab: int, sampling: SamplingParams, bias: tuple[np.ndarray, np.ndarray] | None) -> Any:
    """A llama.cpp sampler chain for one sequence (free it with `llama_sampler_free`), or None for
    plain greedy decoding, which is an argmax of the logits row (the same token, without copying
    the vocabulary into a candidate array: about 0.1 ms per token saved).

    logit_bias, then the penalties, then greedy at temperature 0, else top_k, top_p, min_p,
    temperature and a seeded draw: the order `Llama.generate` uses, so answers match the serial backend."""
    neutral = sampling.repeat_penalty == 1.0 and sampling.frequency_penalty == 0 and sampling.presence_penalty == 0
    if sampling.temperature == 0 and bias is None and neutral:
        return None
    params = lib.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = lib.llama_sampler_chain_init(params)

    def add(sampler: Any) -> None:
        lib.llama_sampler_chain_add(chain, sampler)

    if bias is not None:
        ids, values = bias
        entries = (lib.llama_logit_bias * len(ids))(*(lib.llama_logit_bias(int(t), float(v)) for t, v in zip(ids, values)))
        add(lib.llama_sampler_init_logit_bias(n_vocab, len(ids), entries))
    add(lib.llama_sampler_init_penalties(
        n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty
    ))
    if sampling.temperature == 0:
        add(lib.llama_sampler_init_greedy())
        return chain
    seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
    add(lib.llama_sampler_init_top_k(sampling.top_k))
    add(lib.llama_sampler_init_typical(1.0, 1))
    add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
    add(lib.llama_sampler_init_min_p(sampling.min_p, 1))
    add(lib.llama_sampler_init_temp(sampling.temperature))
    add(lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class Decoding:
    """One choice of one job, from its prefill to its Finished event."""

    __slots__ = (
        "job", "index", "prompt", "sampling", "slot", "pos", "pending", "chain", "budget", "count", "assembler",
        "top_logprobs", "constraint", "followers", "out", "row", "done",
    )

    def __init__(self, job: Any, index: int, prompt: Prompt, sampling: SamplingParams, budget: int):
        self.job = job
        self.index = index
        self.prompt = prompt
        self.sampling = sampling
        self.slot: Slot | None = None
        self.pos = 0  # where the next token goes (tokens before it are in the slot's cells)
        self.pending: list[int] = []  # tokens to decode next: the rest of the prompt, then the last sampled one
        self.chain: Any = None
        self.budget = budget
        self.count = 0
        self.assembler: TextAssembler[TokenLogprob] = TextAssembler(prompt.stops)
        self.top_logprobs = sampling.top_logprobs if sampling.logprobs else None
        self.constraint: SequenceConstraint | None = None  # its own matcher and repeated-call guard
        self.followers: list[Decoding] = []  # sibling choices (n > 1) waiting to copy this one's prefill
        self.out: int | None = None  # this step's batch index of its last token, if it samples this step
        self.row = 0  # and that token's row among the step's logits
        self.done = False

    @property
    def prefilling(self) -> bool:
        return self.pos < len(self.prompt.tokens)

    def start(self, slot: Slot, reuse: int) -> None:
        """Take `slot`, whose cells already hold the first `reuse` prompt tokens."""
        self.slot = slot
        slot.decoding = self
        self.pos = reuse
        self.pending = self.prompt.tokens[reuse:]

    def sample(self, lib: Any, ctx: Any, logits: np.ndarray) -> int:
        """Sample this step's token from its row of the step's `logits` (already masked in place
        when it has a constraint: `llama_sampler_sample` reads the same memory)."""
        if self.chain is None:  # plain greedy: llama.cpp's greedy sampler takes the first maximum too
            return int(logits[self.row].argmax())
        return lib.llama_sampler_sample(self.chain, ctx, self.out)

    def accept(self, token: int, ends: bool, text: Callable[..., bytes], logprobs: np.ndarray | None) -> FinishReason | None:
        """Take the sampled token (`ends`: an end-of-generation token); emit its text once decided.
        `logprobs`: the log-softmax of the raw row (before the bias, the penalties and the constraint)."""
        constraint = self.constraint
        if constraint is not None and not constraint.matcher.consume(token):
            raise constraint.matcher.failure()
        if ends:
            return "stop"
        self.count += 1
        piece = text(token, constraint is not None and token in constraint.preserved)
        entry = None if logprobs is None else token_logprob(logprobs, token, piece, self.top_logprobs, text)
        out, released = self.assembler.feed(piece, entry)
        for delta in deltas(out, released, constraint.guard if constraint else None, self.index):
            self.job.emit(delta)
        if self.assembler.stopped or (constraint is not None and constraint.stopped):
            return "stop"  # a stop string, or the output is complete (nothing but the end may follow)
        if self.count >= self.budget:
            return "length"
        self.pending = [token]
        return None

    def finish(self, reason: FinishReason) -> None:
        """Emit the held-back text (unless cancelled) and the Finished event."""
        if reason != "cancelled":
            text, released = self.assembler.flush()
            for delta in deltas(text, released, self.constraint.guard if self.constraint else None, self.index, final=True):
                self.job.emit(delta)
        self.job.emit(Finished(reason, len(self.prompt.tokens), self.count, self.index))
        self.done = True
        self.pending = []
