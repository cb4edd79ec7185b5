"""Section 1: our HTTP API against llama-cpp-python called directly (same model, prompt, seed,
max_tokens, greedy). Repetitions are grouped (ours through the lean client, ours through httpx,
the engine) and rotate which goes first.

Our side is measured with the lean client (bench/lean.py): httpx's own cost before a stream's
first token (2-3 ms here, on the cores the model uses) is as large as the overhead measured. The
same requests through httpx, as the openai SDK sends them, are a row of their own, and the notes
give both overheads."""

from __future__ import annotations

import logging

import httpx

from .clients import Engine, Outcome, chat
from .harness import Profile, Row, Section, median, speed_ratio
from .lean import LeanConnection, lean_chat
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
    lean = LeanConnection(server.base_url)
    async with httpx.AsyncClient(timeout=600) as client:
        for stream in (False, True):
            payload = profile.chat_payload(TIER, stream=stream)
            await chat(client, url, payload)  # warm-up: loads the tier, fills the KV prefix
            await lean_chat(lean, payload)
            engine.chat(payload)
            sides: dict[str, list[Outcome]] = {"lean": [], "httpx": [], "engine": []}

            async def one(side: str) -> Outcome:
                if side == "lean":
                    return await lean_chat(lean, payload)
                return await chat(client, url, payload) if side == "httpx" else engine.chat(payload)

            for i in range(PAIRS.get(profile.name, profile.reps * 4)):
                order = list(sides)
                for side in order[i % 3:] + order[: i % 3]:  # each goes first in turn
                    wait_idle(server)
                    sides[side].append(await one(side))
            ours, through_httpx, base = sides["lean"], sides["httpx"], sides["engine"]
            label = "streaming" if stream else "non-streaming"
            section.rows.append(_row(f"tokens/s, {label}", "tok/s", ours, base, "tokens_per_second", False))
            if stream:
                section.rows.append(_row("time to first token, streaming", "s", ours, base, "ttft", True))
                section.rows.append(_row("time to first token, streaming, through httpx", "s", through_httpx, base, "ttft",
                                         True, target="- (as the openai SDK sees it; see note)"))
                engine_ttft = median([b.ttft for b in base if b.ttft]) or 0
                overhead, with_httpx = (1000 * ((median([o.ttft for o in side if o.ttft]) or 0) - engine_ttft)
                                        for side in (ours, through_httpx))
                section.notes.append(
                    f"per-request overhead (p50 time to first token, ours minus the engine's): {overhead:.1f} ms "
                    f"over {len(ours)} requests with the lean client (target <= {OVERHEAD_TARGET_MS:g} ms); "
                    f"{with_httpx:.1f} ms through httpx (the gap between the two is httpx's own cost).")
            _check_same_work(section, label, ours + through_httpx, base)
    await lean.close()
    return section


def _row(metric: str, unit: str, ours: list[Outcome], base: list[Outcome], attr: str, lower: bool,
         target: str | None = None) -> Row:
    o = [getattr(x, attr) for x in ours]
    b = [getattr(x, attr) for x in base]
    return Row(
        section="engine", metric=metric, unit=unit, ours=o, baseline=b, baseline_label="llama-cpp-python direct",
        ratios=[speed_ratio(x, y, lower_is_better=lower) for x, y in zip(o, b)],
        ratio_def="engine TTFT / our TTFT" if lower else "our tok/s / engine tok/s",
        target=target or (f"p50 overhead <= {OVERHEAD_TARGET_MS:g} ms (see note)" if lower else ">= 0.97"),
    )


def _check_same_work(section: Section, label: str, ours: list[Outcome], base: list[Outcome]) -> None:
    """Greedy + same seed: both sides must produce the same number of tokens, else the ratio lies."""
    counts = {"ours": sorted({o.tokens for o in ours}), "engine": sorted({o.tokens for o in base})}
    hits = [o.cache for o in ours if o.cache and o.cache.upper().startswith("HIT")]
    if counts["ours"] != counts["engine"]:
        section.notes.append(f"{label}: token counts differ (ours {counts['ours']}, engine {counts['engine']}).")
    if hits:
        section.notes.append(f"{label}: {len(hits)} of our responses came from the cache: figures invalid.")
