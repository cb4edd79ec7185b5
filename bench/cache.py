"""Response cache: latency of a HIT against the MISS that generated it, on a real server.

    .venv/bin/python bench/cache.py [--tokens 64] [--rounds 5]

Prints medians and the ratio MISS/HIT, both measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server import LiveServer  # noqa: E402


def timed_post(client: httpx.Client, body: dict) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return time.perf_counter() - started, response.headers["x-cache"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp)).start()
        try:
            with httpx.Client(base_url=server.base_url, timeout=300) as client:
                timed_post(client, {"model": "light", "messages": [{"role": "user", "content": "warm"}], "max_tokens": 1})
                misses, hits = [], []
                for i in range(args.rounds):
                    body = {"model": "light", "temperature": 0, "max_tokens": args.tokens,
                            "messages": [{"role": "user", "content": f"Write a story about the number {i}."}]}
                    seconds, outcome = timed_post(client, body)
                    assert outcome == "MISS"
                    misses.append(seconds)
                    seconds, outcome = timed_post(client, body)
                    assert outcome == "HIT"
                    hits.append(seconds)
        finally:
            server.stop()
    miss, hit = statistics.median(misses), statistics.median(hits)
    print(f"max_tokens={args.tokens} rounds={args.rounds}")
    print(f"MISS median {miss * 1000:.1f} ms   HIT median {hit * 1000:.1f} ms   MISS/HIT {miss / hit:.0f}x")


if __name__ == "__main__":
    main()
