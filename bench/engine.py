"""Section 1: our HTTP API against llama-cpp-python called directly (same model, prompt, seed,
max_tokens, greedy). Repetitions are paired and alternate which side goes first."""

from __future__ import annotations

import logging

import httpx

from .clients import Engine, Outcome, chat
from .harness import Profile, Row, Section, median, speed_ratio
from .procs import OurServer, wait_idle

logger = logging.getLogger(__name__)
TIER = "light"
# Pairs per measure. A time to first token of ~13 ms varies by several ms on a shared 2-core
# machine: with 20 pairs the p50 overhead moved by +-2 ms between runs of the same code.
PAIRS = {"full": 48}  # other profiles: profile.reps x 4
OVERHEAD_TARGET_MS = 4.0  # the API issue: our own per-request overhead at most 4 ms at p50


async def run(profile: Profile, server: OurServer, engine: Engine) -> Section:
    section = Section(1, "Overhead against the engine (llama-cpp-python called directly)")
    url = server.base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=600) as client:
        for stream in (False, True):
            payload = profile.chat_payload(TIER, stream=stream)
            await chat(client, url, payload)  # warm-up: loads the tier, fills the KV prefix
            engine.chat(payload)
            ours: list[Outcome] = []
            base: list[Outcome] = []
            for i in range(PAIRS.get(profile.name, profile.reps * 4)):
                wait_idle(server)
                if i % 2:
                    base.append(engine.chat(payload))
                    ours.append(await chat(client, url, payload))
                else:
                    ours.append(await chat(client, url, payload))
                    base.append(engine.chat(payload))
            label = "streaming" if stream else "non-streaming"
            section.rows.append(_row(f"tokens/s, {label}", "tok/s", ours, base, "tokens_per_second", False))
            if stream:
                section.rows.append(_row("time to first token, streaming", "s", ours, base, "ttft", True))
                overhead = 1000 * ((median([o.ttft for o in ours if o.ttft]) or 0) - (median([b.ttft for b in base if b.ttft]) or 0))
                section.notes.append(
                    f"per-request overhead (p50 time to first token, ours minus the engine's): {overhead:.1f} ms "
                    f"over {len(ours)} pairs (target <= {OVERHEAD_TARGET_MS:g} ms).")
            _check_same_work(section, label, ours, base)
    return section


def _row(metric: str, unit: str, ours: list[Outcome], base: list[Outcome], attr: str, lower: bool) -> Row:
    o = [getattr(x, attr) for x in ours]
    b = [getattr(x, attr) for x in base]
    return Row(
        section="engine", metric=metric, unit=unit, ours=o, baseline=b, baseline_label="llama-cpp-python direct",
        ratios=[speed_ratio(x, y, lower_is_better=lower) for x, y in zip(o, b)],
        ratio_def="engine TTFT / our TTFT" if lower else "our tok/s / engine tok/s",
        target=f"p50 overhead <= {OVERHEAD_TARGET_MS:g} ms (see note)" if lower else ">= 0.97",
    )


def _check_same_work(section: Section, label: str, ours: list[Outcome], base: list[Outcome]) -> None:
    """Greedy + same seed: both sides must produce the same number of tokens, else the ratio lies."""
    counts = {"ours": sorted({o.tokens for o in ours}), "engine": sorted({o.tokens for o in base})}
    hits = [o.cache for o in ours if o.cache and o.cache.upper().startswith("HIT")]
    if counts["ours"] != counts["engine"]:
        section.notes.append(f"{label}: token counts differ (ours {counts['ours']}, engine {counts['engine']}).")
    if hits:
        section.notes.append(f"{label}: {len(hits)} of our responses came from the cache: figures invalid.")
