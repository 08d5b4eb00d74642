"""Sweep throughput: a 6-run grid serially and with ``hydra/launcher=joblib`` (2 jobs at once).

Each sweep is one ``python -m flowstudy.train -m ...`` process (W&B offline). Reports the wall
time of each, the speed-up, and the per-run overhead of the sweep machinery: wall time not spent
inside the training loop (``steps / steps_per_s`` of each result.json), per run.

    python -m benchmarks.sweep_throughput [--epochs 8] [--smoke] [--save [DIR]]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import parser as benchmark_parser
from benchmarks.common import publish
from flowstudy.results import RunResult

GRID = ["seed=0,1,2,3,4,5"]


def sweep(work: Path, epochs: int, n_train: int, launcher: list[str],
          extra: list[str]) -> tuple[float, float]:
    """(wall seconds, seconds inside training loops summed over the runs)."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowstudy.train", "-m", *GRID, *launcher,
                    f"train.epochs={epochs}", f"dataset.n_train={n_train}",
                    "train.warmup_steps=50", *extra,
                    f"study_dir={work / 'study'}", f"hydra.sweep.dir={work / 'sweep'}"],
                   env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    results = [RunResult.load(p) for p in (work / "study" / "runs").glob("*/result.json")]
    assert len(results) == 6 and all(r.status == "completed" for r in results)
    return wall, sum(r.steps / r.steps_per_s for r in results)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    n_train = 512 if args.smoke else 5120
    # The smoke test checks the machinery, not the numbers: small held-out sets and no
    # likelihood keep each run's evaluation from dominating it.
    extra = ["dataset.n_val=128", "dataset.n_test=128", "sample.likelihood=false"] \
        if args.smoke else []
    if args.smoke:
        args.epochs = 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, launcher in (("serial", []),
                               ("joblib_2", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])):
            wall, training = sweep(Path(tmp) / name, args.epochs, n_train, launcher, extra)
            parallel = 2 if name == "joblib_2" else 1
            rows.append({"sweep": name, "wall_s": wall,
                         "overhead_s_per_run": (wall - training / parallel) / 6})
    rows[1]["speedup"] = rows[0]["wall_s"] / rows[1]["wall_s"]
    rows[0]["speedup"] = 1.0
    publish("sweep_throughput", rows, ["sweep", "speedup", "wall_s", "overhead_s_per_run"],
            args.save, epochs=args.epochs)


if __name__ == "__main__":
    main()
