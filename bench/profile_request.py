"""`python -m bench.profile_request [--requests N] [--out DIR]`: where one request's milliseconds go.

Starts our server (cache off), warms the `light` tier, then samples it with py-spy while N
sequential requests run: a non-streaming chat completion of one token (engine work is small, so
our own overhead dominates), then /health. Prints client-side p50 latencies and the functions
holding most samples on the event loop's thread; writes py-spy's raw samples and a flame graph.
Profile before and after a change, on the same machine; the figures are noisy on a shared one.
"""

from __future__ import annotations

import argparse
import collections
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .clients import Engine
from .procs import N_THREADS, OurServer

CHAT = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0, "seed": 1,
        "repeat_penalty": 1.0}
OWN = ("openai_api/", "registry/", "inference/", "llmservice/")  # our code (for the own-frames table)


def _latencies(client: httpx.Client, method: str, path: str, n: int, body: dict | None = None) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.request(method, path, json=body)
        response.raise_for_status()
        out.append(time.perf_counter() - started)
    return out


def _top(raw: Path, limit: int = 25) -> list[tuple[int, str]]:
    """Inclusive sample counts per function (frames of our code and of Django/ninja/pydantic) on the
    thread that runs the event loop (the one with uvicorn's frames)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "uvicorn" not in stack:
            continue
        total += int(count)
        seen = set()
        for frame in stack.split(";"):
            if frame not in seen:
                seen.add(frame)
                counts[frame] += int(count)
    return [(total, "(all event-loop samples)")] + [(c, f) for f, c in counts.most_common(limit * 4)
                                                     if any(p in f for p in OWN + ("django/", "ninja/", "pydantic"))][:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_request", description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="llmservice-profile-")))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with OurServer(args.out, extra_env={"ENABLE_CACHE": "false", "LOG_LEVEL": "WARNING"}) as server:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            _latencies(client, "POST", "/v1/chat/completions", 5, CHAT)  # loads the tier
            raw = args.out / "chat.raw.txt"
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.process.pid), "--rate", "500", "--threads",
                                    "--format", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            chat = _latencies(client, "POST", "/v1/chat/completions", args.requests, CHAT)
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            spy.wait(timeout=60)
            health = _latencies(client, "GET", "/health", args.requests)
    from inference.bundled import smollm2_gguf

    engine = Engine(smollm2_gguf(), N_THREADS)
    engine.chat(CHAT)
    direct = [engine.chat(CHAT).seconds for _ in range(args.requests)]
    engine.close()
    ours, base = statistics.median(chat), statistics.median(direct)
    print(f"p50 chat (1 token, non-streaming): ours {ours * 1000:.2f} ms, engine direct {base * 1000:.2f} ms, "
          f"overhead {(ours - base) * 1000:.2f} ms; p50 /health {statistics.median(health) * 1000:.2f} ms; n={args.requests}")
    if raw.exists():
        for count, frame in _top(raw):
            print(f"{count:8d}  {frame}")
        print(f"raw samples: {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
