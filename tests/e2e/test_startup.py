"""The front is torch-free: composing, validating, naming, --help, shell completion and the
report's table import neither torch nor wandb (their imports alone take seconds; a run imports
them when it starts). Each case is a fresh process that reports, at exit, which of the two it
loaded. Not a timing test: ``python -m benchmarks.startup`` measures the time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "wandb")
# Runs ``code`` and, at exit (after a SystemExit too), prints the heavy modules it imported.
PROBE = """import atexit, sys
atexit.register(lambda: print("loaded:", *[m for m in {heavy!r} if m in sys.modules],
                              file=sys.stderr))
{code}"""
ENTRY_POINT = """import runpy, sys
sys.argv = [{module!r}, *{args!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)"""
COMPOSE = """from flowstudy.config import compose_config
from flowstudy.errors import ConfigError
print(compose_config(["train.lr=3e-4", "seed=1"]).name)
try:
    compose_config(["train.lr=-1"])
except ConfigError as e:
    print(e)"""
TABLE = """from flowstudy.report import markdown, rows_for, table
from flowstudy.results import RunResult
runs = [RunResult(name=f"mlp-seed{s}", group="g", status="completed", best_val_loss=1.0 + s,
                  config={"seed": s}, metrics={"w2": 0.1 * s}) for s in (1, 2)]
print(markdown(*table(rows_for(runs), "w2")))"""


def _probe(code: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                            list[str]]:
    """Run ``code`` in a fresh interpreter; its result and the heavy modules it imported."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, code=code)],
                          cwd=tmp_path, env=environment, capture_output=True, text=True,
                          timeout=120)
    *stderr, loaded = proc.stderr.rstrip("\n").split("\n")
    assert loaded.startswith("loaded:"), proc.stderr[-3000:]
    proc.stderr = "\n".join(stderr)
    return proc, loaded.split()[1:]


def _entry_point(module: str, args: list[str], tmp_path: Path, **env: str) -> tuple[
        subprocess.CompletedProcess[str], list[str]]:
    return _probe(ENTRY_POINT.format(module=module, args=args), tmp_path, **env)


def test_composing_and_validating_import_no_torch(tmp_path: Path) -> None:
    proc, loaded = _probe(COMPOSE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["mlp-ot-moons-none-lr3e-4-seed1",
                                        "train.lr=-1.0 is not allowed: a float > 0"]
    assert loaded == []


def test_a_config_error_on_the_command_line_imports_no_torch(tmp_path: Path) -> None:
    proc, loaded = _entry_point("flowstudy.train", ["train.lr=-1"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "flowstudy: error: train.lr=-1.0 is not allowed: a float > 0"
    assert loaded == []


def test_help_imports_no_torch(tmp_path: Path) -> None:
    proc, loaded = _entry_point("flowstudy.train", ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== Config groups (group=option) ==\nablation: architectures," in proc.stdout
    assert "arch: dit, mlp, unet\n" in proc.stdout and "\n  width: null\n" in proc.stdout
    assert "\ntrain.lr " in proc.stdout and "Full documentation" in proc.stdout
    assert loaded == []


def test_hydra_help_still_lists_hydra_groups(tmp_path: Path) -> None:
    proc, _ = _entry_point("flowstudy.train", ["--hydra-help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hydra/launcher: basic, joblib" in proc.stdout


@pytest.mark.parametrize(("line", "offered"), [
    ("flowstudy-train arch=", "arch=dit arch=mlp arch=unet"),
    ("flowstudy-train train.l", "train.log_every= train.lr="),
])
def test_shell_completion_imports_no_torch(line: str, offered: str, tmp_path: Path) -> None:
    proc, loaded = _entry_point("flowstudy.train", ["-sc", "query=bash"], tmp_path,
                                COMP_LINE=line)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == offered
    assert loaded == []


@pytest.mark.parametrize(("module", "args", "expected"), [
    ("flowstudy.sample", ["--help"], "flowstudy.sample: sample a trained run's checkpoint"),
    ("flowstudy.report", ["--help"], "Tabulate and plot a study group's runs, with intervals"),
    ("flowstudy.report", ["-sc", "query=bash"], "--group"),
])
def test_sample_and_report_front_imports_no_torch(module: str, args: list[str], expected: str,
                                                  tmp_path: Path) -> None:
    proc, loaded = _entry_point(module, args, tmp_path,
                                COMP_LINE="flowstudy-report --gr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expected in proc.stdout
    assert loaded == []


def test_the_report_table_imports_no_torch(tmp_path: Path) -> None:
    proc, loaded = _probe(TABLE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One configuration of two seeds: W2 0.1 and 0.2, its mean with the t interval (12.7 standard
    # errors each side at two seeds); no row is bold, as it has nothing to beat.
    assert "| mlp |" in proc.stdout and "| 0.15 [-0.49, 0.79] |" in proc.stdout
    assert loaded == []
