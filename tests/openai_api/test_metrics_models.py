"""The /metrics model gauges come from each tier's TierStatus: running and waiting requests and the
KV cache use an engine reports, read at scrape time. Uses the fake parallel engine (a fake, named
as one: tests/inference/test_scheduler.py)."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.exposition import generate_latest

from inference.engines.base import EngineStats
from openai_api.metrics import model_gauges
from tests.helpers import async_wait_until
from tests.inference.test_scheduler import ParallelFakeEngine, collect, parallel, queued, request, spec  # noqa: F401


def scraped(name: str, tier: str) -> float | None:
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("tier") == tier:
                return sample.value
    return None


async def test_model_gauges_show_running_waiting_and_kv_cache_use_from_the_engine(parallel):  # noqa: F811
    s = spec(slots=2)
    await collect(parallel, s, request("warm", 1))
    ParallelFakeEngine.hold.clear()
    tasks = [asyncio.create_task(collect(parallel, s, request(f"p{i}", max_tokens=2))) for i in range(3)]
    await queued(parallel, "par", 2, 1)
    # The engine's own figures are sampled by the scheduler after it admits, a moment after the counters.
    await async_wait_until(lambda: (parallel.status()["par"].engine or EngineStats(0, 0)).active == 2, "the engine's stats")
    (gauge,) = [g for g in model_gauges() if g.tier == "par"]
    assert (gauge.loaded, gauge.running, gauge.waiting) == (True, 2, 1)
    assert gauge.kv_cache_usage == 2 / 128  # the fake engine's cells: one per running job, of 64 per slot
    assert scraped("llmservice:num_requests_running", "par") == 2
    assert scraped("llmservice:num_requests_waiting", "par") == 1
    assert scraped("llmservice:kv_cache_usage_perc", "par") == 2 / 128
    ParallelFakeEngine.hold.set()
    await asyncio.gather(*tasks)
    assert scraped("llmservice:num_requests_running", "par") == 0
