"""Every benchmark runs end to end at tiny sizes (speed is measured, never asserted, here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                    if "publish(" in p.read_text() and p.stem != "common")


def test_every_benchmark_is_run_by_the_smoke_test() -> None:
    assert BENCHMARKS == ["evaluation", "gpu_step", "loop_overhead", "minibatch_ot", "quality",
                          "startup", "sweep_throughput"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_runs_and_writes_only_with_save(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    before = {p: p.stat().st_mtime for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    # The startup benchmark, the quickest, also shows that --save DIR writes there.
    save = ["--save", str(tmp_path)] if name == "startup" else []
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--smoke", *save],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ms_per_step" in proc.stdout or "ratio" in proc.stdout or "speedup" in proc.stdout \
        or "w2" in proc.stdout or "steps_per_s" in proc.stdout or "cpu_s" in proc.stdout
    after = {p: p.stat().st_mtime for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert after == before  # the recorded results change only with --save (to their dir)
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == (["startup.json"] if save else [])
    if save:
        recorded = json.loads((tmp_path / "startup.json").read_text())
        assert recorded["benchmark"] == "startup" and len(recorded["rows"]) == 4
