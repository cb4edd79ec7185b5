"""Writes the run: results.md (tables), results.json (every raw figure), results.png (ratios)."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .harness import Profile, Section, median

logger = logging.getLogger(__name__)


TITLES = {1: "Overhead against the engine", 2: "Against the peer", 3: "Cache hits", 4: "Concurrency",
          5: "Embeddings", 6: "Startup", 7: "Structured output",
          8: "Continuous batching", 9: "MLX against mlx_lm.server", 10: "Remote tier"}


def machine() -> dict:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        from importlib.metadata import version

        llama = version("llama-cpp-python")
    except Exception:  # noqa: BLE001 - only a label
        llama = "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "os": f"{platform.system()} {platform.release()}",
            "python": sys.version.split()[0], "llama_cpp_python": llama, "commit": commit or "?"}


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def write(out: Path, profile: Profile, sections: list[Section], info: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    done = {s.number for s in sections}
    sections = sorted(sections + [Section(n, TITLES[n], skipped="not run (the run was cut short before it).")
                                  for n in profile.sections if n not in done], key=lambda s: s.number)
    paths = [out / "results.md", out / "results.json", out / "results.png"]
    curves = [s for s in sections if s.series]
    if curves:
        paths.append(out / "results-batching.png")
    paths[0].write_text(_markdown(profile, sections, info))
    paths[1].write_text(json.dumps({"profile": profile.name, "info": info,
                                    "sections": [s.as_dict() for s in sections]}, indent=1))
    _chart(paths[2], sections, info)
    if curves:
        _batching_chart(paths[3], curves[0], info)
    return paths


def _markdown(profile: Profile, sections: list[Section], info: dict) -> str:
    m = info["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (profile `{profile.name}`) on {info['finished']} in {info['seconds']:.0f} s, commit "
        f"`{m['commit']}`.",
        "",
        f"**Machine**: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}, Python {m['python']}, "
        f"llama-cpp-python {m['llama_cpp_python']}. Model: SmolLM2-135M-Instruct Q4_1 GGUF (bundled), "
        f"n_threads=2, n_ctx=2048, greedy, seed fixed, max_tokens={profile.max_tokens}.",
        "",
        f"Load average (1 min) at start {info['load_start']:.2f}, at end {info['load_end']:.2f}. "
        "Anything else running on the machine makes absolute figures noisy (a load average near or above the "
        "core count means they are); each ratio pairs ours with a baseline measured moments apart in the same "
        "run, which cancels part of that noise.",
        "",
        "**How to read**: every ratio is normalised so that **higher is better for us** and **1.00 is "
        "parity** with the baseline (rates: ours / baseline; times: baseline / ours). *Spread* is the min-max "
        "of the per-repetition ratios; *n* the number of repetitions (rounds).",
        "",
    ]
    for s in sections:
        lines += [f"## {s.number}. {s.title}", ""]
        if s.skipped:
            lines += [f"_Skipped: {s.skipped}_", ""]
            continue
        lines += ["| Measure | Ours (median) | Baseline | Baseline (median) | Ratio | Spread | n | Ratio is | Target |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in s.rows:
            ratios = [x for x in r.ratios if x is not None]
            spread = f"{_num(min(ratios))}-{_num(max(ratios))}" if ratios else "n/a"
            lines.append(
                f"| {r.metric} | {_num(median(r.ours))} {r.unit} | {r.baseline_label} | {_num(median(r.baseline))} "
                f"{r.unit} | **{_num(r.ratio_median)}** | {spread} | {len(r.ratios)} | {r.ratio_def} | {r.target} |"
            )
        lines.append("")
        lines += [f"- {n}" for n in s.notes + [f"{r.metric}: {r.note}" for r in s.rows if r.note]]
        lines.append("")
    lines += ["![ratios](results.png)", ""]
    if any(s.series for s in sections):
        lines += ["![continuous batching](results-batching.png)", ""]
    return "\n".join(lines)


def _chart(path: Path, sections: list[Section], info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, medians, lows, highs = [], [], [], []
    for s in sorted(sections, key=lambda s: s.number):
        for r in s.rows:
            ratios = [x for x in r.ratios if x]
            if not ratios:
                continue
            mid = median(ratios)
            labels.append(f"{s.number}. {r.metric}")
            medians.append(mid)
            lows.append(mid - min(ratios))
            highs.append(max(ratios) - mid)
    height = max(2.5, 0.38 * len(labels) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, medians, xerr=[lows, highs], color="#4c72b0", ecolor="#333333", capsize=3, height=0.6)
    ax.axvline(1.0, color="#c44e52", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    if medians and max(medians) / max(min(medians), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("ratio against the same-run baseline (higher is better for us; 1 = parity)")
    m = info["machine"]
    ax.set_title(f"llmservice benchmarks, {info['finished'][:10]}: {m['cores']} cores, {m['cpu'][:40]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _batching_chart(path: Path, section: Section, info: dict) -> None:
    """Section 8's curves: aggregate tokens/s and p99 time to first token against client count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, ttft) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"ours": ("llmservice", "#4c72b0", "o-"), "peer": ("llama-server", "#dd8452", "s-"),
              "limit": ("llama-batched-bench (decode limit)", "#55a868", "^--")}
    for key, (label, color, style) in styles.items():
        points = sorted((int(n), v) for n, v in section.series.get(key, {}).items() if v)
        if points:
            rate.plot(*zip(*points), style, color=color, label=label)
        points = sorted((int(n), v) for n, v in section.series.get(f"{key}_p99", {}).items() if v)
        if points:
            ttft.plot(*zip(*points), style, color=color, label=label)
    rate.set(xlabel="concurrent streaming clients (= parallel sequences)", ylabel="aggregate tokens/s",
             title="Throughput")
    ttft.set(xlabel="concurrent streaming clients", ylabel="p99 time to first token (s)", title="Time to first token")
    for ax in (rate, ttft):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    m = info["machine"]
    fig.suptitle(f"Continuous batching, {info['finished'][:10]}: {m['cores']} cores, {m['cpu'][:40]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
