"""Prometheus metrics, named after vLLM's where the meaning matches, with the `llmservice:` prefix.

https://docs.vllm.ai/en/latest/design/metrics.html

Request metrics are updated once per request when it ends (`observe_request`, from the access
middleware): nothing here runs per token. Model, cache and server gauges are read at scrape time
by `ServiceCollector` from `model_gauges()`, an adapter over each tier's `TierStatus`
(inference/status.py: the scheduler's counts and its engine's stats, KV cache use included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from inference.manager import get_manager
from llmservice.activity import server_activity
from llmservice.lifecycle import lifecycle

from .cache import response_cache

if TYPE_CHECKING:
    from .request_record import RequestRecord

PREFIX = "llmservice:"
disable_created_metrics()  # no `_created` series next to every counter

# Buckets: vLLM's for token timings; request latency also resolves the millisecond endpoints.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0)

REQUESTS = Counter(PREFIX + "requests", "HTTP requests by tier, endpoint and status code.", ["tier", "endpoint", "status"])
ERRORS = Counter(
    PREFIX + "request_errors",
    "Error responses by tier, endpoint and OpenAI error code (429s and 503s included).",
    ["tier", "endpoint", "code"],
)
LATENCY = Histogram(
    PREFIX + "e2e_request_latency_seconds",
    "Time from a request's arrival to its last response byte (streams: the end of the stream).",
    ["tier", "endpoint"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    PREFIX + "time_to_first_token_seconds",
    "Time from a generation request's arrival to its first generated text.",
    ["tier"],
    buckets=TTFT_BUCKETS,
)
TPOT = Histogram(
    PREFIX + "request_time_per_output_token_seconds",
    "Mean inter-token latency of each generation request (one observation per request).",
    ["tier"],
    buckets=TPOT_BUCKETS,
)
QUEUE_TIME = Histogram(
    PREFIX + "request_queue_time_seconds",
    "Time a generation request waited in its model's queue.",
    ["tier"],
    buckets=TTFT_BUCKETS,
)
PROMPT_TOKENS = Counter(PREFIX + "prompt_tokens", "Prompt tokens processed (cache hits excluded).", ["tier"])
GENERATION_TOKENS = Counter(PREFIX + "generation_tokens", "Tokens generated (cache hits excluded).", ["tier"])


def observe_request(record: "RequestRecord") -> None:
    """Count one finished request (called once per request, by the access middleware)."""
    tier, endpoint = record.tier, record.endpoint
    REQUESTS.labels(tier, endpoint, str(record.status)).inc()
    if record.error_code:
        ERRORS.labels(tier, endpoint, record.error_code).inc()
    LATENCY.labels(tier, endpoint).observe(record.total_seconds)
    if record.cache == "HIT" or not tier:
        return
    prompt, completion = record.tokens()
    if prompt:
        PROMPT_TOKENS.labels(tier).inc(prompt)
    if completion:
        GENERATION_TOKENS.labels(tier).inc(completion)
    ttft = record.first_token_seconds
    if ttft is not None:
        TTFT.labels(tier).observe(ttft)
    for stats in record.generations:
        if stats.seconds_per_output_token is not None:
            TPOT.labels(tier).observe(stats.seconds_per_output_token)
        if stats.queue_seconds is not None:
            QUEUE_TIME.labels(tier).observe(stats.queue_seconds)


@dataclass(frozen=True)
class ModelGauges:
    """One tier's model, as the scrape sees it."""

    tier: str
    loaded: bool
    load_seconds: float | None
    running: int  # requests being served now
    waiting: int  # requests queued behind them
    kv_cache_usage: float | None = None  # 0..1; None for an engine without a KV cache


def model_gauges() -> list[ModelGauges]:
    """The source of the model gauges: each tier's `TierStatus`."""
    return [
        ModelGauges(
            tier=name,
            loaded=status.loaded,
            load_seconds=status.load_seconds,
            running=status.running,
            waiting=status.queued,
            kv_cache_usage=status.kv_cache_usage,
        )
        for name, status in get_manager().status().items()
    ]


class ServiceCollector:
    """Gauges and counters read at scrape time: models, response cache, serving state."""

    def describe(self) -> list[Metric]:
        return []  # registering must not read the models before the server has started

    def collect(self) -> Iterator[Metric]:
        yield from self._models(model_gauges())
        hits = CounterMetricFamily(PREFIX + "response_cache_hits", "Response cache hits.", labels=["tier"])
        misses = CounterMetricFamily(PREFIX + "response_cache_misses", "Response cache misses.", labels=["tier"])
        for tier, counts in list(response_cache.counters.items()):
            hits.add_metric([tier], counts["hits"])
            misses.add_metric([tier], counts["misses"])
        size = GaugeMetricFamily(PREFIX + "response_cache_bytes", "Bytes of responses in the in-memory cache.", labels=["tier"])
        entries = GaugeMetricFamily(PREFIX + "response_cache_entries", "Responses in the in-memory cache.", labels=["tier"])
        for tier, stats in response_cache.memory_stats().items():
            size.add_metric([tier], stats["bytes"])
            entries.add_metric([tier], stats["entries"])
        yield from (hits, misses, size, entries)
        yield GaugeMetricFamily(PREFIX + "api_requests_in_flight", "API requests in flight.", value=server_activity.in_flight)
        yield GaugeMetricFamily(PREFIX + "draining", "1 while shutting down (refusing new requests).", value=int(not lifecycle.accepting))

    @staticmethod
    def _models(gauges: list[ModelGauges]) -> Iterator[Metric]:
        running = GaugeMetricFamily(PREFIX + "num_requests_running", "Requests being generated.", labels=["tier"])
        waiting = GaugeMetricFamily(PREFIX + "num_requests_waiting", "Requests waiting in a model's queue.", labels=["tier"])
        loaded = GaugeMetricFamily(PREFIX + "model_loaded", "1 when the tier's model is loaded and ready.", labels=["tier"])
        load = GaugeMetricFamily(PREFIX + "model_load_seconds", "How long the tier's model took to load.", labels=["tier"])
        kv = GaugeMetricFamily(PREFIX + "kv_cache_usage_perc", "Fraction of the KV cache in use (0..1).", labels=["tier"])
        for g in gauges:
            running.add_metric([g.tier], g.running)
            waiting.add_metric([g.tier], g.waiting)
            loaded.add_metric([g.tier], int(g.loaded))
            if g.load_seconds is not None:
                load.add_metric([g.tier], g.load_seconds)
            if g.kv_cache_usage is not None:
                kv.add_metric([g.tier], g.kv_cache_usage)
        total = GaugeMetricFamily(PREFIX + "models_loaded", "Models loaded and ready.", value=sum(g.loaded for g in gauges))
        yield from (running, waiting, loaded, load, kv, total)


REGISTRY.register(ServiceCollector())
