"""Section 6: process start to the first `/health` 200 with three tiers configured (lazy loading),
against `python -c "import django"` as the floor. Each start seeds a freshly migrated database."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .harness import Profile, Row, Section, speed_ratio
from .procs import OurServer

logger = logging.getLogger(__name__)


def three_tiers(model_path: str) -> dict[str, str]:
    return {"TIER_NAMES": "light,medium,heavy", **{f"{t}_MODEL_PATH": model_path for t in ("LIGHT", "MEDIUM", "HEAVY")}}


def run(profile: Profile, workdir: Path, model_path: str) -> Section:
    section = Section(6, "Startup: process start to /health 200, three tiers, lazy loading")
    env = three_tiers(model_path)
    template = OurServer(workdir, env).db_path  # migrated once; every start gets a fresh copy
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(profile.startup_reps):
        floor.append(_import_django())
        with OurServer(workdir, env, template_db=template) as server:
            ours.append(server.start())
            health = httpx.get(server.base_url + "/health", timeout=5).json()
        if sorted(health.get("tiers", {})) != ["heavy", "light", "medium"] or health.get("loaded"):
            section.notes.append(f"unexpected /health after start: {health}")
    section.rows.append(Row(
        section="startup", metric="start to /health 200", unit="s", ours=ours, baseline=floor,
        baseline_label='python -c "import django"',
        ratios=[speed_ratio(a, b, lower_is_better=True) for a, b in zip(ours, floor)],
        ratio_def="import-django time / our start time", target="(floor; no model is loaded)",
    ))
    return section


def _import_django() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import django"], check=True)
    return time.perf_counter() - started
