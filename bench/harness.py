"""What every section shares: the run profile, the result rows, and the statistics."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

# One prompt for every chat workload (engine, peer, our server): long answers, so max_tokens bounds them.
PROMPT = "Write a long, detailed story about a robot who learns to paint. Describe every day."
SEED = 1234


@dataclass(frozen=True)
class Profile:
    """How much work each section does. `full` fits in about 20 minutes on 2 shared cores."""

    name: str
    reps: int  # paired repetitions of each single-client measurement
    max_tokens: int
    concurrency: tuple[int, ...]  # client counts for the peer and concurrency sections
    rounds: int  # rounds per concurrency level
    cache_requests: int  # requests per cache/health round
    cache_rounds: int
    embed_texts: int  # texts per embeddings measurement
    embed_rounds: int  # paired rounds (ours, direct) per embeddings client count
    startup_reps: int
    batch_clients: tuple[int, ...] = ()  # section 8 (continuous batching against llama-server); () = not run
    batch_rounds: int = 3  # rounds of 2N requests per client count
    batch_max_tokens: int = 128
    only: tuple[int, ...] = ()  # run just these sections (`--only`)

    @property
    def sections(self) -> tuple[int, ...]:
        """The sections this profile runs (the smoke run that the tests drive leaves sections 8 and 9 out)."""
        every = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) if self.batch_clients else (1, 2, 3, 4, 5, 6, 7, 10)
        return tuple(n for n in every if not self.only or n in self.only)

    def chat_payload(self, model: str, *, stream: bool) -> dict:
        """Greedy, seeded, fixed max_tokens; repeat_penalty pinned (the peer server's default is 1.1)."""
        return {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "seed": SEED,
            "repeat_penalty": 1.0,
            "stream": stream,
        }


FULL = Profile("full", reps=5, max_tokens=32, concurrency=(1, 4, 8), rounds=2, cache_requests=100,
               cache_rounds=5, embed_texts=64, embed_rounds=6, startup_reps=5, batch_clients=(1, 4, 8, 16))
SMOKE = Profile("smoke", reps=1, max_tokens=8, concurrency=(1, 2), rounds=1, cache_requests=5,
                cache_rounds=1, embed_texts=4, embed_rounds=1, startup_reps=1)


@dataclass
class Row:
    """One figure: ours against its baseline. `ratios` are per-repetition, normalised so that
    higher is better for us and 1.0 means parity with the baseline."""

    section: str
    metric: str
    unit: str
    ours: list[float]
    baseline: list[float]
    baseline_label: str
    ratios: list[float]
    ratio_def: str
    target: str = ""
    note: str = ""

    @property
    def ratio_median(self) -> float | None:
        return median(self.ratios)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio_median": self.ratio_median}


@dataclass
class Section:
    """A section's rows, or the reason it was skipped, plus free-form notes."""

    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    series: dict[str, dict[str, float | None]] = field(default_factory=dict)  # curves for a section's own chart

    def as_dict(self) -> dict:
        return {"number": self.number, "title": self.title, "skipped": self.skipped, "notes": self.notes,
                "rows": [r.as_dict() for r in self.rows], "series": self.series}


def median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return float(np.median(clean)) if clean else None


def percentile(values: list[float], q: float) -> float | None:
    clean = [v for v in values if v is not None]
    return float(np.percentile(clean, q)) if clean else None


def speed_ratio(ours: float | None, baseline: float | None, *, lower_is_better: bool) -> float | None:
    """ours vs baseline as 'how many times as good': rate/rate, or time(baseline)/time(ours)."""
    if not ours or not baseline:
        return None
    return baseline / ours if lower_is_better else ours / baseline
