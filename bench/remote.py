"""Section 10: a remote tier's overhead over calling its upstream directly (issue 16).

Two llmservice processes: the upstream serves the bundled SmolLM2 as `light` (cache off); the
front serves `remote`, a remote tier relaying to it. Streaming requests go to the upstream
directly and through the front, alternating, one at a time; the ratios are paired per request and
the median is reported (targets: tokens/s >= 0.95x, time to first token within 1.1x).

Time to first token is measured twice:
- the same prompt every time: the upstream reuses its KV cache for the whole prompt, so its first
  token is one decode step (12-15 ms here) and the front's fixed cost is the largest share it
  can be;
- a new prompt per request (the same length, a different number up front), which the upstream has
  to prefill, as every new chat turn is: the case a remote tier's users see.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx

from .clients import Outcome, chat
from .harness import PROMPT, Profile, Row, Section, median, speed_ratio
from .procs import ROOT, OurServer, wait_idle

logger = logging.getLogger(__name__)
PAIRS = {"full": 48, "smoke": 2}  # paired requests, alternating: the median of their ratios (16 left a spread of 0.5-1.9)


def run(profile: Profile, workdir: Path) -> Section:
    import asyncio

    section = Section(10, "Remote tier: relayed through llmservice vs calling the upstream directly")
    upstream_dir, front_dir = workdir / "remote-upstream", workdir / "remote-front"
    upstream_dir.mkdir(exist_ok=True)
    front_dir.mkdir(exist_ok=True)
    with OurServer(upstream_dir, extra_env={"CACHE_REQUESTS": "none"}) as upstream:
        upstream.start()
        front_env = {"CACHE_REQUESTS": "none", "TIER_NAMES": "remote", "REMOTE_BACKEND": "remote",
                     "REMOTE_MODEL_PATH": "light", "REMOTE_BASE_URL": upstream.base_url + "/v1"}
        with OurServer(front_dir, extra_env=front_env) as front:
            subprocess.run([sys.executable, "manage.py", "sync_tiers"], cwd=ROOT, env=front.env(),
                           capture_output=True, check=True)
            front.start()
            asyncio.run(_measure(profile, section, upstream, front))
    return section


async def _measure(profile: Profile, section: Section, upstream: OurServer, front: OurServer) -> None:
    max_tokens = profile.max_tokens * 2  # long enough that tokens/s is mostly the decode rate
    direct_payload = {**profile.chat_payload("light", stream=True), "max_tokens": max_tokens}
    pairs = PAIRS.get(profile.name, 2)
    async with httpx.AsyncClient(timeout=600) as client:
        for url, payload in ((upstream.base_url, direct_payload), (front.base_url, {**direct_payload, "model": "remote"})):
            await chat(client, url + "/v1/chat/completions", payload)  # warm both
        direct, relayed = await _pairs(client, upstream, front, [direct_payload] * (2 * pairs))
        fresh = [_new_prompt(direct_payload, n) for n in range(2 * pairs)]
        fresh_direct, fresh_relayed = await _pairs(client, upstream, front, fresh)
    failed = [o.status for o in direct + relayed + fresh_direct + fresh_relayed if not o.completed]
    if failed:
        section.notes.append(f"{len(failed)} requests did not complete (statuses {sorted(set(failed))}).")
    for metric, unit, pick, lower, target, (ours_of, base_of) in (
        ("tokens/s, streaming", "tok/s", lambda o: o.tokens_per_second, False, ">= 0.95", (relayed, direct)),
        ("time to first token, streaming, the same prompt every time (upstream KV cache hit)", "s",
         lambda o: o.ttft, True, ">= 0.91 (within 1.1x)", (relayed, direct)),
        ("time to first token, streaming, a new prompt per request (upstream prefills it)", "s",
         lambda o: o.ttft, True, ">= 0.91 (within 1.1x)", (fresh_relayed, fresh_direct)),
    ):
        ours = [pick(o) for o in ours_of]
        base = [pick(o) for o in base_of]
        section.rows.append(Row(
            section="remote", metric=metric, unit=unit, ours=ours, baseline=base,
            baseline_label="the upstream called directly",
            ratios=[speed_ratio(a, b, lower_is_better=lower) for a, b in zip(ours, base)],
            ratio_def="direct / relayed" if lower else "relayed / direct", target=target,
        ))
    for label, d, r in (("the same prompt", direct, relayed), ("a new prompt per request", fresh_direct, fresh_relayed)):
        ttft_d, ttft_r = median([o.ttft for o in d if o.ttft]), median([o.ttft for o in r if o.ttft])
        if ttft_d and ttft_r:
            section.notes.append(f"median time to first token, {label}: {ttft_r * 1000:.1f} ms relayed, "
                                 f"{ttft_d * 1000:.1f} ms direct ({(ttft_r - ttft_d) * 1000:+.1f} ms), over {len(d)} "
                                 f"pairs of {max_tokens}-token streams.")


def _new_prompt(payload: dict, n: int) -> dict:
    """`payload` with a prompt no earlier request began with (same token count for every n < 9000)."""
    return {**payload, "messages": [{"role": "user", "content": f"Story {1000 + n}. {PROMPT}"}]}


async def _pairs(client: httpx.AsyncClient, upstream: OurServer, front: OurServer,
                 payloads: list[dict]) -> tuple[list[Outcome], list[Outcome]]:
    """Payloads taken two at a time: one straight to the upstream, one through the front (which
    goes first alternates), each sent once the upstream is idle. Returns (direct, relayed)."""
    direct, relayed = [], []
    for i in range(0, len(payloads) - 1, 2):
        order = [(direct, upstream.base_url, payloads[i]), (relayed, front.base_url, {**payloads[i + 1], "model": "remote"})]
        for outcomes, url, payload in order if i % 4 == 0 else order[::-1]:  # neither always goes first
            wait_idle(upstream)
            outcomes.append(await chat(client, url + "/v1/chat/completions", payload))
    return direct, relayed
