"""The benchmark's smoke run (a few requests per section) so `make bench` never rots.

It starts real servers (ours and llama_cpp.server) with the bundled SmolLM2. No timing assertions:
only that the run completes, runs every section (none may skip) and writes well-formed results.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {1, 2, 3, 4, 5, 6, 7, 10}


@pytest.mark.e2e
def test_smoke_run_writes_table_json_and_chart(tmp_path, smollm2_path):
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-5000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["profile"] == "smoke"
    sections = {s["number"]: s for s in results["sections"]}
    assert set(sections) == SECTIONS
    for section in sections.values():
        assert not section["skipped"], section  # every section runs: a skip here is a broken benchmark
        assert section["rows"], section
        for row in section["rows"]:
            assert len(row["ours"]) == len(row["baseline"]) or row["section"] == "concurrency", row
            assert row["ratios"] and all(r is None or r > 0 for r in row["ratios"]), row

    # streams against our server all complete; greedy output is the same length as the engine's
    peer_rows = [r for r in sections[2]["rows"] if r["metric"].endswith(": completed streams")]
    assert peer_rows and all(n == 2 for r in peer_rows for n in r["ours"])
    assert not [n for n in sections[1]["notes"] if "differ" in n or "cache" in n]
    assert not [n for n in sections[10]["notes"] if "did not complete" in n]  # every relayed stream ended
    assert len(sections[10]["rows"]) == 3  # tokens/s; time to first token on a repeated and on a new prompt

    table = (tmp_path / "results.md").read_text()
    for number in SECTIONS:
        assert f"## {number}. " in table
    assert "| Measure | Ours (median) |" in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_every_section_of_the_full_profile_has_a_report_title():
    from bench.harness import FULL
    from bench.report import TITLES

    assert set(FULL.sections) <= set(TITLES)  # a cut-short run lists the sections it never reached by title
