"""Every benchmark runs end to end at tiny sizes (speed is measured, never asserted, here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["loop_overhead", "minibatch_ot", "startup",
                                  "sweep_throughput", "quality", "gpu_step", "evaluation"])
def test_benchmark_smoke_runs(name: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    before = {p: p.stat().st_mtime for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--smoke"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ms_per_step" in proc.stdout or "ratio" in proc.stdout or "speedup" in proc.stdout \
        or "w2" in proc.stdout or "steps_per_s" in proc.stdout or "cpu_s" in proc.stdout
    after = {p: p.stat().st_mtime for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert after == before  # smoke runs leave the recorded results alone
