"""Section 3: a cached chat completion against `/health` (the floor: routing, one small DB query).

The response cache is detected by its `X-Cache` response header; without it the section is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from .clients import chat
from .harness import Profile, Row, Section, percentile, speed_ratio
from .procs import OurServer, wait_idle

logger = logging.getLogger(__name__)
TIER = "light"
CONCURRENCY = 8  # clients for the requests/s figure


async def run(profile: Profile, server: OurServer) -> Section:
    section = Section(3, "Cache hits: a cached chat completion against /health")
    url = server.base_url + "/v1/chat/completions"
    payload = {**profile.chat_payload(TIER, stream=False), "max_tokens": 16}
    async with httpx.AsyncClient(timeout=600) as client:
        first = await chat(client, url, payload, headers={})
        second = await chat(client, url, payload, headers={})
        if first.cache is None and second.cache is None:
            section.skipped = "no X-Cache response header: the response cache is not in this build."
            return section
        if not (second.cache or "").upper().startswith("HIT"):
            section.skipped = f"a repeated greedy, seeded request was not a hit (X-Cache: {second.cache})."
            return section

        async def cached() -> tuple[float, str | None]:
            started = time.perf_counter()
            response = await client.post(url, json=payload)
            return time.perf_counter() - started, response.headers.get("x-cache")

        async def health() -> tuple[float, str | None]:
            started = time.perf_counter()
            await client.get(server.base_url + "/health")
            return time.perf_counter() - started, "HIT"

        stats: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": [], "rps": []} for k in ("cached", "health")}
        misses = 0
        for _ in range(profile.cache_rounds):
            for name, call in (("cached", cached), ("health", health)):
                wait_idle(server)
                timings = [await call() for _ in range(profile.cache_requests)]
                misses += sum(not (c or "").upper().startswith("HIT") for _, c in timings)
                latencies = [t for t, _ in timings]
                stats[name]["p50"].append(percentile(latencies, 50))
                stats[name]["p99"].append(percentile(latencies, 99))
                stats[name]["rps"].append(await _requests_per_second(call, profile.cache_requests))
    for key, metric, unit, lower in (("p50", "p50 latency", "s", True), ("p99", "p99 latency", "s", True),
                                     ("rps", f"requests/s, {CONCURRENCY} clients", "req/s", False)):
        c, h = stats["cached"][key], stats["health"][key]
        section.rows.append(Row(
            section="cache", metric=metric, unit=unit, ours=c, baseline=h, baseline_label="/health",
            ratios=[speed_ratio(a, b, lower_is_better=lower) for a, b in zip(c, h)],
            ratio_def="/health latency / cached latency" if lower else "cached req/s / health req/s",
            target=">= 0.5 (within 2x of /health)",
        ))
    if misses:
        section.notes.append(f"{misses} of the timed chat requests were not cache hits.")
    return section


async def _requests_per_second(call, total: int) -> float:
    """`total` requests shared by CONCURRENCY concurrent clients."""
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return total / (time.perf_counter() - started)
