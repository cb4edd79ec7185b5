"""Section 10: a remote tier's overhead over calling its upstream directly (issue 16).

Two llmservice processes: the upstream serves the bundled SmolLM2 as `light` (cache off); the
front serves `remote`, a remote tier relaying to it. The same streaming request goes to the
upstream directly and through the front, alternating, one at a time; the ratios are paired per
request and the median is reported (targets: tokens/s >= 0.95x, time to first token within 1.1x).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx

from .clients import chat
from .harness import Profile, Row, Section, median, speed_ratio
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
    relayed_payload = {**direct_payload, "model": "remote"}
    direct, relayed = [], []
    async with httpx.AsyncClient(timeout=600) as client:
        for url, payload in ((upstream.base_url, direct_payload), (front.base_url, relayed_payload)):  # warm both
            await chat(client, url + "/v1/chat/completions", payload)
        for i in range(PAIRS.get(profile.name, 2)):
            order = [(direct, upstream.base_url, direct_payload), (relayed, front.base_url, relayed_payload)]
            for outcomes, url, payload in order if i % 2 == 0 else order[::-1]:  # neither always goes first
                wait_idle(upstream)
                outcomes.append(await chat(client, url + "/v1/chat/completions", payload))
    failed = [o.status for o in direct + relayed if not o.completed]
    if failed:
        section.notes.append(f"{len(failed)} requests did not complete (statuses {sorted(set(failed))}).")
    for metric, unit, pick, lower, target in (
        ("tokens/s, streaming", "tok/s", lambda o: o.tokens_per_second, False, ">= 0.95"),
        ("time to first token, streaming", "s", lambda o: o.ttft, True, ">= 0.91 (within 1.1x)"),
    ):
        ours = [pick(o) for o in relayed]
        base = [pick(o) for o in direct]
        section.rows.append(Row(
            section="remote", metric=metric, unit=unit, ours=ours, baseline=base,
            baseline_label="the upstream called directly",
            ratios=[speed_ratio(a, b, lower_is_better=lower) for a, b in zip(ours, base)],
            ratio_def="direct / relayed" if lower else "relayed / direct", target=target,
        ))
    ttft_direct, ttft_relayed = median([o.ttft for o in direct if o.ttft]), median([o.ttft for o in relayed if o.ttft])
    if ttft_direct and ttft_relayed:
        section.notes.append(f"median time to first token: {ttft_relayed * 1000:.1f} ms relayed, "
                             f"{ttft_direct * 1000:.1f} ms direct, over {len(direct)} pairs of {max_tokens}-token streams.")
