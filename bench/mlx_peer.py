"""Section 9 (full profile only): MLX tiers against `mlx_lm.server` on the same converted model.

The `light-mlx` tier (SmolLM2-135M-Instruct converted by `manage.py build_models`) against mlx-lm's
own server on the same directory, both greedy, the same prompt and max_tokens: one stream (tokens/s
and time to first token), then 4 and 8 concurrent streaming clients (completed streams, aggregate
tokens/s, p99 time to first token), in rounds that alternate which server goes first; seeded (as
every other request here), and at 8 clients unseeded too, since mlx_lm.server batches only unseeded
requests (its global random generator) while ours batches both. Last,
constrained decoding (a json_schema answer) against free decoding on our MLX tier. mlx_lm.server
batches concurrent requests with its BatchGenerator, as our MLX engine does; here MLX runs on the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import httpx

from .clients import Outcome, chat, chat_clients
from .harness import Profile, Row, Section, median, percentile, speed_ratio
from .procs import ROOT, OurServer, Process, wait_idle

logger = logging.getLogger(__name__)
TIER = "light-mlx"
PEER = "mlx_lm.server"
LEVELS = ((4, True), (8, True), (8, False))  # (clients, seeded): mlx_lm.server runs a seeded request alone
MAX_TOKENS = 16
PEER_MODEL = "default_model"  # mlx_lm.server's name for its --model (any other name is fetched from the hub)
SCHEMA = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 40},
                                           "lines": {"type": "array", "items": {"type": "string", "maxLength": 60},
                                                     "minItems": 2, "maxItems": 4}},
          "required": ["title", "lines"], "additionalProperties": False}


class MlxLmServer(Process):
    """mlx-lm's own OpenAI server (`python -m mlx_lm server`), continuous batching on."""

    name = "mlx_lm.server"

    def __init__(self, workdir: Path, model_dir: Path, concurrency: int):
        super().__init__(workdir)
        self.model_dir = model_dir
        self.concurrency = concurrency

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlx_lm", "server", "--model", str(self.model_dir), "--host", "127.0.0.1",
                "--port", str(self.port), "--temp", "0", "--decode-concurrency", str(self.concurrency),
                "--prompt-concurrency", str(self.concurrency), "--log-level", "WARNING"]

    def health_path(self) -> str:
        return "/v1/models"


def run(profile: Profile, workdir: Path) -> Section:
    from inference.mlx_build import SMOLLM2_DIR

    section = Section(9, f"MLX: the {TIER} tier against {PEER} on the same converted model")
    model_dir = Path(os.environ.get("MODELS_DIR") or ROOT / "var" / "models") / SMOLLM2_DIR  # as settings.MODELS_DIR
    if not model_dir.is_dir():
        section.skipped = f"{model_dir} is missing: run `manage.py build_models`"
        return section
    concurrency = max(n for n, _ in LEVELS)
    with OurServer(workdir, extra_env={"MLX_PARALLEL": str(concurrency)}) as ours, \
            MlxLmServer(workdir, model_dir, concurrency) as peer:
        ours.start()
        peer.start(timeout=300)
        servers = {"ours": ours, "peer": peer}
        asyncio.run(_single(profile, section, servers))
        asyncio.run(_concurrent(profile, section, servers))
        asyncio.run(_constrained(profile, section, ours))
    section.notes.append(
        f"Greedy, max_tokens={MAX_TOKENS}, streaming; {profile.reps} paired single requests, "
        f"{profile.rounds} rounds per client count; {PEER} runs with --decode-concurrency {concurrency}, "
        f"our tier with MLX_PARALLEL={concurrency}. MLX runs on the CPU here (no Metal)."
    )
    return section


def _payload(profile: Profile, stream: bool = True, model: str = TIER) -> dict:
    """Fewer tokens than the llama.cpp sections: MLX on this CPU decodes a few tokens a second."""
    payload = {**profile.chat_payload(model, stream=stream), "max_tokens": MAX_TOKENS}
    payload.pop("repeat_penalty")  # not an OpenAI field; mlx_lm.server has no penalty by default
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def _urls(servers: dict[str, Process]) -> dict[str, str]:
    return {k: p.base_url + "/v1/chat/completions" for k, p in servers.items()}


def _payloads(profile: Profile) -> dict[str, dict]:
    return {"ours": _payload(profile), "peer": _payload(profile, model=PEER_MODEL)}


async def _single(profile: Profile, section: Section, servers: dict[str, Process]) -> None:
    urls, payloads = _urls(servers), _payloads(profile)
    singles: dict[str, list[Outcome]] = {"ours": [], "peer": []}
    async with httpx.AsyncClient(timeout=600) as client:
        for name, url in urls.items():
            await chat(client, url, payloads[name])  # warm-up: loads the model, compiles what MLX compiles
        for i in range(profile.reps):
            for name in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                wait_idle(servers[name])
                singles[name].append(await chat(client, urls[name], payloads[name]))
    o, p = singles["ours"], singles["peer"]
    o_rate, p_rate = [x.tokens_per_second for x in o], [x.tokens_per_second for x in p]
    section.rows.append(Row(
        section="mlx", metric="1 client tokens/s, streaming", unit="tok/s", ours=o_rate, baseline=p_rate,
        baseline_label=PEER, ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(o_rate, p_rate)],
        ratio_def=f"ours / {PEER}", target=">= 0.95"))
    o_ttft, p_ttft = [x.ttft for x in o], [x.ttft for x in p]
    section.rows.append(Row(
        section="mlx", metric="1 client time to first token", unit="s", ours=o_ttft, baseline=p_ttft,
        baseline_label=PEER, ratios=[speed_ratio(a, b, lower_is_better=True) for a, b in zip(o_ttft, p_ttft)],
        ratio_def=f"{PEER} / ours"))


async def _concurrent(profile: Profile, section: Section, servers: dict[str, Process]) -> None:
    urls = _urls(servers)
    for n, seeded in LEVELS:
        payloads = _payloads(profile)
        if not seeded:
            for payload in payloads.values():
                payload.pop("seed", None)
        label = f"{n} clients" + ("" if seeded else " (no seed)")
        rounds: dict[str, list[tuple[float, list[Outcome]]]] = {"ours": [], "peer": []}
        for i in range(profile.rounds):
            for name in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                for process in servers.values():
                    wait_idle(process)
                rounds[name].append(await chat_clients(urls[name], payloads[name], n))
        rate = {k: [sum(o.tokens for o in outs) / wall for wall, outs in v] for k, v in rounds.items()}
        done = {k: sum(o.completed for _, outs in v for o in outs) for k, v in rounds.items()}
        p99 = {k: percentile([o.ttft for _, outs in v for o in outs], 99) for k, v in rounds.items()}
        total = profile.rounds * n
        section.rows.append(Row(
            section="mlx", metric=f"{label}: completed streams", unit="streams", ours=[done["ours"]],
            baseline=[done["peer"]], baseline_label=PEER,
            ratios=[speed_ratio(done["ours"], done["peer"], lower_is_better=False)], ratio_def=f"ours / {PEER}",
            target="1", note=f"of {total}"))
        section.rows.append(Row(
            section="mlx", metric=f"{label}: aggregate tokens/s", unit="tok/s", ours=rate["ours"],
            baseline=rate["peer"], baseline_label=PEER,
            ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(rate["ours"], rate["peer"])],
            ratio_def=f"ours / {PEER}", target="> 1 (ahead)" if n == 8 else ""))
        section.rows.append(Row(
            section="mlx", metric=f"{label}: p99 time to first token", unit="s", ours=[p99["ours"]],
            baseline=[p99["peer"]], baseline_label=PEER,
            ratios=[speed_ratio(p99["ours"], p99["peer"], lower_is_better=True)], ratio_def=f"{PEER} / ours"))
        logger.info("%s: ours %.0f tok/s, %s %.0f tok/s", label, median(rate["ours"]) or 0, PEER,
                    median(rate["peer"]) or 0)


async def _constrained(profile: Profile, section: Section, ours: Process) -> None:
    url = ours.base_url + "/v1/chat/completions"
    free = _payload(profile, stream=False)
    constrained = {**free, "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "poem", "schema": SCHEMA, "strict": True}}}
    runs: dict[str, list[Outcome]] = {"free": [], "constrained": []}
    async with httpx.AsyncClient(timeout=600) as client:
        await chat(client, url, constrained)  # warm-up: compiles the grammar once
        for i in range(profile.reps):
            for name in ("free", "constrained") if i % 2 == 0 else ("constrained", "free"):
                runs[name].append(await chat(client, url, free if name == "free" else constrained))
    c_rate = [x.tokens_per_second for x in runs["constrained"]]
    f_rate = [x.tokens_per_second for x in runs["free"]]
    section.rows.append(Row(
        section="mlx", metric="json_schema against free decoding, tokens/s", unit="tok/s", ours=c_rate,
        baseline=f_rate, baseline_label="free decoding (same tier)",
        ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(c_rate, f_rate)],
        ratio_def="constrained / free", note="non-streaming; tokens from usage"))
