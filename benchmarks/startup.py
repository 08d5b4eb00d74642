"""Start-up: whole-process time of the commands that answer before any run starts.

Each is a fresh process, timed from its start to its exit; the commands run in turn, ``--repeats``
times each, and the median counts. Targets (issue 16, a 2-core machine): a one-line config error
(``python -m flowstudy.train train.lr=-1``) <= 1.0 s, ``--help`` <= 1.0 s, a bash completion
query (``flowstudy-train arch=<TAB>``) <= 0.7 s. The reference is ``benchmarks.minimal_app``, a
minimal Hydra app running an empty task.

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

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "flowstudy.train"]
# name -> (command, extra environment, exit status it must end with, target seconds)
COMMANDS: dict[str, tuple[list[str], dict[str, str], int, float | None]] = {
    "minimal_hydra_app": ([sys.executable, "-m", "benchmarks.minimal_app",
                           "hydra.run.dir=minimal"], {}, 0, None),
    "config_error": ([*TRAIN, "train.lr=-1"], {}, 2, 1.0),
    "help": ([*TRAIN, "--help"], {}, 0, 1.0),
    "completion_query": ([*TRAIN, "-sc", "query=bash"], {"COMP_LINE": "flowstudy-train arch="},
                         0, 0.7),
}


def seconds_to_exit(command: list[str], env: dict[str, str], status: int, cwd: Path) -> float:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true", **env}
    environment.pop("HYDRA_FULL_ERROR", None)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != status:
        raise RuntimeError(f"{command} exited with {proc.returncode}, not {status}: "
                           f"{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:  # the runs' output dirs land here
        for _ in range(args.repeats):
            for name, (command, env, status, _target) in COMMANDS.items():
                times[name].append(seconds_to_exit(command, env, status, Path(tmp)))
    reference = statistics.median(times["minimal_hydra_app"])
    rows = [{"process": name, "median_s": statistics.median(times[name]),
             "target_s": "-" if target is None else target,
             "ratio": statistics.median(times[name]) / reference,
             "runs_s": ", ".join(f"{x:.2f}" for x in times[name])}
            for name, (_command, _env, _status, target) in COMMANDS.items()]
    publish("startup", rows, ["process", "median_s", "target_s", "ratio", "runs_s"], args.save,
            repeats=args.repeats)


if __name__ == "__main__":
    main()
