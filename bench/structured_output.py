"""Section 7: structured output against free decoding, through our HTTP API.

The same prompt, the same number of tokens, greedy, streamed: free text against a JSON schema
(and a regular expression) that can't end before max_tokens, so both sides decode the same
length. Decode speed counts tokens after the first over the time after the first (prefill and
compilation are the same for both, and compilation has its own row). Repetitions alternate which
side goes first. The last row shows the grammar cache: the time to the first token of a schema
the server has never seen (compiled in the request) against the same schema again (cached).

    .venv/bin/python -m bench.structured_output [--smoke]   # this section alone, printed
"""

from __future__ import annotations

import logging
import uuid

import httpx

from .clients import Outcome, chat
from .harness import PROMPT, SEED, Profile, Row, Section, speed_ratio
from .procs import OurServer, wait_idle

logger = logging.getLogger(__name__)
TIER = "light"
LENGTH = {"smoke": 12, "full": 96}  # tokens per measurement: long enough for a decode rate
TARGET = ">= 0.95"
# Cannot finish before max_tokens: at least 64 items, every field bounded.
SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 64, "maxItems": 80}},
    "required": ["story"],
    "additionalProperties": False,
}
CONSTRAINED = {
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": SCHEMA}}},
    "regex": {"structured_outputs": {"regex": "([A-Za-z]{1,12}[ ,.]){64,200}"}},
}


def _payload(max_tokens: int, extra: dict | None = None) -> dict:
    return {
        "model": TIER,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": SEED,
        "repeat_penalty": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }


def _decode_rate(outcome: Outcome) -> float | None:
    if outcome.ttft is None or outcome.tokens < 2 or outcome.seconds <= outcome.ttft:
        return None
    return (outcome.tokens - 1) / (outcome.seconds - outcome.ttft)


def _wide_schema(nonce: str, width: int) -> dict:
    """A schema that takes a while to compile (many optional properties), new for every nonce."""
    properties = {f"{nonce}_{i}": {"type": "string", "maxLength": 8} for i in range(width)}
    return {"type": "object", "properties": properties, "additionalProperties": False}


async def run(profile: Profile, server: OurServer) -> Section:
    section = Section(7, "Structured output: constrained against free decoding, and the grammar cache")
    url = server.base_url + "/v1/chat/completions"
    length = LENGTH.get(profile.name, LENGTH["full"])
    reps = max(profile.reps, 1)
    async with httpx.AsyncClient(timeout=600) as client:
        free = _payload(length)
        await chat(client, url, free)  # warm-up: loads the tier, fills the KV prefix
        for name, extra in CONSTRAINED.items():
            constrained = _payload(length, extra)
            await chat(client, url, constrained)  # compiles once; the measured requests hit the cache
            ours: list[Outcome] = []
            base: list[Outcome] = []
            for i in range(reps):
                wait_idle(server)
                pair = [(ours, constrained), (base, free)]
                for outcomes, payload in pair if i % 2 == 0 else pair[::-1]:
                    outcomes.append(await chat(client, url, payload))
            section.rows.append(_speed_row(name, ours, base))
            _check_same_length(section, name, ours, base, length)
        section.rows.append(await _cache_row(client, url, reps))
    return section


def _speed_row(name: str, ours: list[Outcome], base: list[Outcome]) -> Row:
    o = [_decode_rate(x) for x in ours]
    b = [_decode_rate(x) for x in base]
    return Row(
        section="structured", metric=f"decode tok/s, {name} against free text", unit="tok/s", ours=o, baseline=b,
        baseline_label="free text, same prompt and length", ratios=[speed_ratio(x, y, lower_is_better=False) for x, y in zip(o, b)],
        ratio_def="constrained tok/s / free tok/s", target=TARGET,
    )


def _check_same_length(section: Section, name: str, ours: list[Outcome], base: list[Outcome], length: int) -> None:
    short = [o.tokens for o in ours + base if o.tokens != length]
    if short:
        section.notes.append(f"{name}: some answers were not {length} tokens long ({short}): the rates compare unequal work.")


async def _cache_row(client: httpx.AsyncClient, url: str, reps: int) -> Row:
    """Time to first token of a never-seen schema (compiled in the request) against it cached."""
    cold: list[float | None] = []
    warm: list[float | None] = []
    for _ in range(reps):
        schema = _wide_schema(uuid.uuid4().hex[:8], 300)
        payload = _payload(4, {"response_format": {"type": "json_schema", "json_schema": {"name": "wide", "schema": schema}}})
        cold.append((await chat(client, url, payload)).ttft)
        warm.append((await chat(client, url, payload)).ttft)
    return Row(
        section="structured", metric="time to first token, a new 300-property schema: cached against compiled",
        unit="s", ours=warm, baseline=cold, baseline_label="the first request (compiles it)",
        ratios=[speed_ratio(w, c, lower_is_better=True) for w, c in zip(warm, cold)],
        ratio_def="first TTFT / cached TTFT", target="> 1 (compilation amortised)",
    )


if __name__ == "__main__":
    import argparse
    import asyncio
    import shutil
    import tempfile
    from pathlib import Path

    from .harness import FULL, SMOKE

    parser = argparse.ArgumentParser(prog="python -m bench.structured_output")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="llmservice-bench-"))
    try:
        with OurServer(workdir) as ours:
            ours.start()
            result = asyncio.run(run(SMOKE if args.smoke else FULL, ours))
        for row in result.rows:
            logger.info("%s: ours %s, baseline %s, ratio %.3f", row.metric, row.ours, row.baseline, row.ratio_median or 0)
        for note in result.notes:
            logger.info("note: %s", note)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
