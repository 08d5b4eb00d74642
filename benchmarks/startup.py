"""Start-up: time from process start to the end of the first training step.

``python -m flowstudy.train`` (defaults, W&B offline, ``train.log_every=1`` so the first step
appears in metrics.jsonl) against ``benchmarks.minimal_app`` (a minimal Hydra app taking one bare
step). Both run alternately as fresh processes with one torch thread; the clock stops when the
first step's file appears (polled every millisecond) and the process is then stopped.

    python -m benchmarks.startup [--repeats 5] [--smoke] [--save [DIR]]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import parser as benchmark_parser
from benchmarks.common import publish


def time_to(path: Path, command: list[str], cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while not (path.exists() and path.stat().st_size > 0):
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited with {proc.returncode} before its step")
            time.sleep(0.001)
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    times: dict[str, list[float]] = {"minimal_hydra_app": [], "flowstudy": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            work = Path(tmp) / str(r)
            work.mkdir()
            marker = work / "first_step.done"
            times["minimal_hydra_app"].append(time_to(marker, [
                sys.executable, "-m", "benchmarks.minimal_app", f"marker={marker}",
                f"hydra.run.dir={work / 'minimal'}"], Path.cwd()))
            metrics = work / "study" / "runs" / "mlp-ot-moons-none" / "metrics.jsonl"
            times["flowstudy"].append(time_to(metrics, [
                sys.executable, "-m", "flowstudy.train", f"study_dir={work / 'study'}",
                f"hydra.run.dir={work / 'out'}", "train.log_every=1", "train.threads=1"],
                Path.cwd()))
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"process": k, "median_s": v, "ratio": v / median["minimal_hydra_app"],
             "runs_s": ", ".join(f"{x:.2f}" for x in times[k])} for k, v in median.items()]
    publish("startup", rows, ["process", "ratio", "median_s", "runs_s"], args.save,
            repeats=args.repeats)


if __name__ == "__main__":
    main()
