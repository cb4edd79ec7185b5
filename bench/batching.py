"""Section 8 (full profile only): continuous batching.

Our server against llama.cpp's own `llama-server --parallel N` (built from the llama.cpp our
llama-cpp-python vendors) at N = 1, 4, 8, 16 concurrent streaming clients, each client sending
its requests one after another (a new request joins as the last one ends), in rounds that
alternate which server goes first. Both get the same GGUF, threads, per-sequence context, flash
attention and greedy sampling; our tier runs with `parallel: N`. Then both against the raw
batched-decode limit of the model at N sequences (`llama-batched-bench`, no sampling, no HTTP),
with our engine's own loop (no HTTP) and the bare Python decode loop in between, which tell where
a gap comes from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path

import httpx

from . import decode_limit, llama_build
from .clients import Outcome, chat, chat_clients_repeating
from .harness import Profile, Row, Section, median, percentile, speed_ratio
from .procs import N_THREADS, LlamaServer, OurServer, wait_idle

logger = logging.getLogger(__name__)
TIER = "light"
PEER = "llama-server"
LIMIT = "llama-batched-bench"
PROMPT_TOKENS = 48  # about our chat prompt through SmolLM2's template
REUSE_SYSTEM_TOKENS = 400


def run(profile: Profile, workdir: Path, model: str) -> Section:
    section = Section(8, "Continuous batching: against llama-server --parallel N and the batched-decode limit")
    levels = list(profile.batch_clients)
    bin_dir = llama_build.binaries()
    tg = profile.batch_max_tokens
    limit = batched_bench(bin_dir, model, levels, PROMPT_TOKENS, tg)
    engine = decode_limit.run_subprocess("engine", model, levels, PROMPT_TOKENS, tg, N_THREADS)
    python = decode_limit.run_subprocess("raw", model, levels, PROMPT_TOKENS, tg, N_THREADS)
    payload = {**profile.chat_payload(TIER, stream=True), "max_tokens": tg,
               "stream_options": {"include_usage": True}}
    series: dict[str, dict[int, float | None]] = {k: {} for k in ("ours", "peer", "limit", "ours_p99", "peer_p99")}
    for n in levels:
        rounds = _measure(profile, workdir, model, bin_dir, n, payload)
        _rows(section, n, rounds, limit.get(n), engine.get(n), python.get(n))
        for name in ("ours", "peer"):
            series[name][n] = median([_rate(r) for r in rounds[name]])
            series[f"{name}_p99"][n] = percentile([o.ttft for r in rounds[name] for o in r[1]], 99)
        series["limit"][n] = limit.get(n)
    section.series = {k: {str(n): v for n, v in values.items()} for k, values in series.items()}
    turn2 = decode_limit.run_subprocess("reuse", model, [5], REUSE_SYSTEM_TOKENS, 32, N_THREADS)
    section.rows.append(Row(
        section="batching", metric="turn 2 of a conversation: time to first token, prompt reuse on", unit="s",
        ours=[turn2["with"]], baseline=[turn2["without"]], baseline_label="prompt reuse off",
        ratios=[speed_ratio(turn2["with"], turn2["without"], lower_is_better=True)], ratio_def="off / on",
        note=f"a system prompt of about {REUSE_SYSTEM_TOKENS} tokens; our engine driven directly, median of 5",
    ))
    section.notes.append(
        f"Each point: {profile.batch_rounds} rounds of 2N streaming requests (N clients, 2 each, back to back), "
        f"max_tokens={tg}, greedy; TTFT percentiles pool every request of the point. Limit: {LIMIT} "
        f"-npp {PROMPT_TOKENS} -ntg {tg} -fa on -t {N_THREADS} (generation tokens/s)."
    )
    return section


def _measure(profile: Profile, workdir: Path, model: str, bin_dir: Path, n: int, payload: dict) -> dict:
    rounds: dict[str, list[tuple[float, list[Outcome]]]] = {"ours": [], "peer": []}
    with OurServer(workdir, extra_env={"LIGHT_PARALLEL": str(n)}) as ours, \
            LlamaServer(workdir, model, bin_dir, parallel=n) as peer:
        ours.start()
        peer.start()
        servers = {"ours": ours, "peer": peer}
        urls = {k: p.base_url + "/v1/chat/completions" for k, p in servers.items()}
        _warm(urls, payload)
        for i in range(profile.batch_rounds):
            for name in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                for process in servers.values():
                    wait_idle(process)
                rounds[name].append(asyncio.run(chat_clients_repeating(urls[name], payload, n, 2)))
        logger.info("%d clients: ours %s tok/s, %s %s tok/s", n, _fmt([_rate(r) for r in rounds["ours"]]), PEER,
                    _fmt([_rate(r) for r in rounds["peer"]]))
    return rounds


def _warm(urls: dict[str, str], payload: dict) -> None:
    async def warm() -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            for url in urls.values():
                await chat(client, url, {**payload, "max_tokens": 4})

    asyncio.run(warm())


def _rows(section: Section, n: int, rounds: dict, limit: float | None, engine: float | None, python: float | None) -> None:
    ours, peer = rounds["ours"], rounds["peer"]
    o_rate, p_rate = [_rate(r) for r in ours], [_rate(r) for r in peer]
    target = ">= 0.95" if n in (4, 8) else ""
    section.rows.append(Row(
        section="batching", metric=f"{n} clients: aggregate tokens/s", unit="tok/s", ours=o_rate, baseline=p_rate,
        baseline_label=PEER, ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(o_rate, p_rate)],
        ratio_def="ours / llama-server", target=target,
    ))
    for q, label, goal in ((50, "p50", ""), (99, "p99", ">= 0.8 (within 1.25x)" if n in (4, 8) else "")):
        o = percentile([x.ttft for _, outs in ours for x in outs], q)
        p = percentile([x.ttft for _, outs in peer for x in outs], q)
        section.rows.append(Row(
            section="batching", metric=f"{n} clients: {label} time to first token", unit="s", ours=[o], baseline=[p],
            baseline_label=PEER, ratios=[speed_ratio(o, p, lower_is_better=True)], ratio_def="llama-server / ours",
            target=goal, note=f"{len(ours) * 2 * n} requests each",
        ))
    o_done = sum(x.completed for _, outs in ours for x in outs)
    p_done = sum(x.completed for _, outs in peer for x in outs)
    section.rows.append(Row(
        section="batching", metric=f"{n} clients: completed streams", unit="streams", ours=[o_done], baseline=[p_done],
        baseline_label=PEER, ratios=[speed_ratio(o_done, p_done, lower_is_better=False)], ratio_def="ours / llama-server",
        target="1", note=f"of {len(ours) * 2 * n}",
    ))
    if limit:
        section.rows.append(Row(
            section="batching", metric=f"{n} sequences: ours (HTTP) against the decode limit", unit="tok/s",
            ours=o_rate, baseline=[limit] * len(o_rate), baseline_label=LIMIT,
            ratios=[speed_ratio(a, limit, lower_is_better=False) for a in o_rate], ratio_def="ours / limit",
            note=f"llama-server reaches {_fmt([r / limit for r in p_rate])} of it",
        ))
        for label, value in (("our engine loop, no HTTP", engine), ("the bare Python decode loop", python)):
            if value:
                section.rows.append(Row(
                    section="batching", metric=f"{n} sequences: {label}, against the decode limit", unit="tok/s",
                    ours=[value], baseline=[limit], baseline_label=LIMIT,
                    ratios=[speed_ratio(value, limit, lower_is_better=False)], ratio_def="ours / limit",
                ))


def batched_bench(bin_dir: Path, model: str, levels: list[int], pp: int, tg: int) -> dict[int, float]:
    """llama-batched-bench's generation tokens/s at each number of parallel sequences."""
    command = [str(bin_dir / "llama-batched-bench"), "-m", model, "-c", str(max(levels) * (pp + tg)), "-b", "2048",
               "-ub", "512", "-npp", str(pp), "-ntg", str(tg), "-npl", ",".join(map(str, levels)), "-fa", "on",
               "-t", str(N_THREADS), "-tb", str(N_THREADS), "--output-format", "jsonl"]
    done = subprocess.run(command, env=llama_build.env(bin_dir), capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.startswith('{"n_kv_max"')]
    return {row["pl"]: row["speed_tg"] for row in rows}


def _rate(round_: tuple[float, list[Outcome]]) -> float:
    wall, outcomes = round_
    return sum(o.tokens for o in outcomes) / wall


def _fmt(values: list[float]) -> str:
    m = median(values)
    return "n/a" if m is None else f"{m:.2f}" if m < 10 else f"{m:.0f}"
