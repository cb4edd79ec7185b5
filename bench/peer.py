"""Sections 2 and 4: our server against llama-cpp-python's own server (single client, then 4 and
8 concurrent streaming clients), and our aggregate throughput and p99 TTFT as clients grow.

Every concurrent client sends one streaming request per round; a stream counts as completed
when a finish_reason arrives (llama_cpp.server ends an interrupted stream with [DONE] and none).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from .clients import Outcome, chat, chat_clients
from .harness import Profile, Row, Section, percentile, speed_ratio
from .procs import PeerServer, Process, wait_idle

logger = logging.getLogger(__name__)
TIER = "light"


@dataclass
class Round:
    """One round of N concurrent clients."""

    wall: float
    outcomes: list[Outcome]

    @property
    def completed(self) -> int:
        return sum(o.completed for o in self.outcomes)

    @property
    def tokens_per_second(self) -> float:
        return sum(o.tokens for o in self.outcomes) / self.wall

    @property
    def useful_tokens_per_second(self) -> float:
        """Tokens of completed streams only: what a client can use."""
        return sum(o.tokens for o in self.outcomes if o.completed) / self.wall

    @property
    def p99_ttft(self) -> float | None:
        return percentile([o.ttft for o in self.outcomes], 99)


async def run(profile: Profile, ours: Process, peer: Process) -> tuple[Section, Section]:
    """Returns (section 2: against the peer, section 4: our concurrency)."""
    against = Section(2, "Against the peer (llama-cpp-python's own server, default settings)")
    against.notes.append(f"The peer runs llama-cpp-python {PeerServer.build()}; ours runs our build (no OpenMP, "
                         "thread pools attached).")
    scaling = Section(4, f"Concurrency: streaming clients on one tier ({TIER})")
    targets = {"ours": ours, "peer": peer}
    urls = {k: p.base_url + "/v1/chat/completions" for k, p in targets.items()}
    singles: dict[str, dict[bool, list[Outcome]]] = {"ours": {False: [], True: []}, "peer": {False: [], True: []}}
    async with httpx.AsyncClient(timeout=600) as client:
        for stream in (False, True):
            payload = profile.chat_payload(TIER, stream=stream)
            for name in targets:
                await chat(client, urls[name], payload)  # warm-up
            for i in range(profile.reps):
                order = ("ours", "peer") if i % 2 == 0 else ("peer", "ours")
                for name in order:
                    wait_idle(targets[name])
                    singles[name][stream].append(await chat(client, urls[name], payload))
    for stream, label in ((False, "non-streaming"), (True, "streaming")):
        o, p = singles["ours"][stream], singles["peer"][stream]
        against.rows.append(_pair_row(f"1 client tokens/s, {label}", "tok/s", o, p, "tokens_per_second", False))
    o, p = singles["ours"][True], singles["peer"][True]
    against.rows.append(_pair_row("1 client time to first token, streaming", "s", o, p, "ttft", True))

    rounds: dict[str, dict[int, list[Round]]] = {"ours": {}, "peer": {}}
    payload = profile.chat_payload(TIER, stream=True)
    levels = [n for n in profile.concurrency if n > 1]
    # Rounds interleave the servers and the client counts, so load drift on a shared machine hits
    # both sides alike. Both must be idle before each round: the peer keeps generating for the
    # streams it cut off, and that work must not land in our measurement.
    for _ in range(profile.rounds):
        for n in [1, *levels]:
            for name in ("ours", "peer") if n > 1 else ("ours",):
                for process in targets.values():
                    wait_idle(process)
                wall, outcomes = await chat_clients(urls[name], payload, n)
                rounds[name].setdefault(n, []).append(Round(wall, outcomes))
    for n in levels:
        o, p = rounds["ours"][n], rounds["peer"][n]
        total = n * len(o)
        against.rows.append(Row(
            section="peer", metric=f"{n} clients: completed streams", unit="streams",
            ours=[r.completed for r in o], baseline=[r.completed for r in p], baseline_label="llama_cpp.server",
            ratios=[speed_ratio(a.completed, b.completed, lower_is_better=False) for a, b in zip(o, p)],
            ratio_def="our completed / peer completed", target="> 1",
            note=f"ours {sum(r.completed for r in o)}/{total}, peer {sum(r.completed for r in p)}/{total} completed",
        ))
        against.rows.append(Row(
            section="peer", metric=f"{n} clients: tokens/s of completed streams", unit="tok/s",
            ours=[r.useful_tokens_per_second for r in o], baseline=[r.useful_tokens_per_second for r in p],
            baseline_label="llama_cpp.server",
            ratios=[speed_ratio(a.useful_tokens_per_second, b.useful_tokens_per_second, lower_is_better=False)
                    for a, b in zip(o, p)],
            ratio_def="ours / peer", target="> 1",
            note=f"all tokens sent incl. cut-off streams: peer {_fmt([r.tokens_per_second for r in p])} tok/s",
        ))
    _scaling_rows(scaling, rounds["ours"], levels)
    return against, scaling


def _pair_row(metric: str, unit: str, ours: list[Outcome], peer: list[Outcome], attr: str, lower: bool) -> Row:
    o = [getattr(x, attr) for x in ours]
    p = [getattr(x, attr) for x in peer]
    return Row(
        section="peer", metric=metric, unit=unit, ours=o, baseline=p, baseline_label="llama_cpp.server",
        ratios=[speed_ratio(a, b, lower_is_better=lower) for a, b in zip(o, p)],
        ratio_def="peer TTFT / our TTFT" if lower else "ours / peer", target=">= 1",
    )


def _scaling_rows(section: Section, rounds: dict[int, list[Round]], levels: list[int]) -> None:
    """Baseline: one client on the same tier, measured in the same round just before."""
    ones = rounds[1]
    one_tps = [r.tokens_per_second for r in ones]
    one_ttft = [r.p99_ttft for r in ones]
    for n in levels:
        rs = rounds[n]
        section.rows.append(Row(
            section="concurrency", metric=f"{n} clients: aggregate tokens/s", unit="tok/s",
            ours=[r.tokens_per_second for r in rs], baseline=one_tps, baseline_label="1 client",
            ratios=[speed_ratio(r.tokens_per_second, b, lower_is_better=False) for r, b in zip(rs, one_tps)],
            ratio_def="aggregate tok/s / 1-client tok/s", target="~1 (one FIFO queue, no batching)",
            note=f"{sum(r.completed for r in rs)}/{n * len(rs)} streams completed",
        ))
        section.rows.append(Row(
            section="concurrency", metric=f"{n} clients: p99 time to first token", unit="s",
            ours=[r.p99_ttft for r in rs], baseline=one_ttft, baseline_label="1 client",
            ratios=[speed_ratio(r.p99_ttft, b, lower_is_better=True) for r, b in zip(rs, one_ttft)],
            ratio_def="1-client TTFT / p99 TTFT", target="(FIFO: the last client waits for n-1 answers)",
        ))


def _fmt(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[len(values) // 2]:.1f}" if values else "n/a"
