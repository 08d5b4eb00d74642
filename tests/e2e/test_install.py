"""Installed from a wheel: the console scripts train and report from an empty directory with the
configs the wheel carries, quietly, and complete their arguments in bash."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ..helpers import name_of

# The run debug=quick trains: named, as every run, by the settings it changes.
QUICK = name_of(["debug=quick", "dataset.n_val=128", "dataset.n_test=128"])

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would point Python, W&B or Hydra elsewhere."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "WANDB_SILENT", "HYDRA_FULL_ERROR")}
    return {**clean, "OMP_NUM_THREADS": "1", **extra}


def _venv_with_the_wheel(tmp_path: Path) -> Path:
    """A fresh venv holding only the wheel built from this checkout; its dependencies (torch and
    the rest) come from this interpreter's site-packages through a .pth line, which adds that
    directory without running its .pth files (so a development install of flowstudy there stays
    out)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "study", "outputs", "multirun", "wandb", "__pycache__",
        "tests", "benchmarks", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path / "dist"), str(source)], check=True,
                   env=_environment())
    wheel = next((tmp_path / "dist").glob("flowstudy-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=_environment())
    packages = Path(subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
        capture_output=True, text=True).stdout.strip())
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir / "bin"


def _run(bindir: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=_environment(PATH=f"{bindir}:{os.environ['PATH']}"))


def _complete(bindir: Path, cwd: Path, script: str, line: str) -> list[str]:
    """What bash offers for ``line`` once the script's completion is installed: the installed
    function runs, asking the script itself."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    bash = (f'eval "$({script} --shell-completion install=bash)"\n'
            f'COMP_LINE={line!r}; COMP_POINT={len(line)}\n'
            f'COMP_WORDS=({" ".join(map(repr, words))}); COMP_CWORD={len(words) - 1}\n'
            f'$(complete -p {script} | sed -E "s/.* -F ([^ ]+) .*/\\1/")\n'
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = _run(bindir, cwd, "bash", "-c", bash)
    assert proc.returncode == 0, proc.stderr
    return sorted(w for w in proc.stdout.split("\n") if w)


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_trains_reports_and_completes_from_an_empty_dir(
        tmp_path: Path) -> None:
    bindir = _venv_with_the_wheel(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    where = _run(bindir, work, "python", "-c",
                 "import flowstudy.config as c; print(c.__file__); print(c.CONF_DIR)")
    module, conf = where.stdout.split()
    assert module.startswith(str(tmp_path / "venv"))
    assert conf == str(Path(module).parents[1] / "conf")

    train = _run(bindir, work, "flowstudy-train", "debug=quick", "wandb.mode=offline",
                 "dataset.n_val=128", "dataset.n_test=128")
    output = train.stdout + train.stderr
    assert train.returncode == 0, output[-3000:]
    assert not [line for line in output.splitlines() if line.startswith("wandb")]  # quiet W&B
    assert "W&B run saved offline in outputs/" in output
    run = work / "study" / "debug" / "runs" / QUICK
    result = json.loads((run / "result.json").read_text())
    assert (result["status"], result["epochs"], result["steps"]) == ("completed", 2, 8)
    checkpoints = work / "study" / "debug" / "checkpoints" / QUICK
    assert {p.name for p in checkpoints.iterdir()} >= {"best.pt", "samples.png", "samples.npz"}
    assert len(list(work.glob("outputs/*/*/wandb/offline-run-*/run-*.wandb"))) == 1

    report = _run(bindir, work, "flowstudy-report", "--study", "study/debug")
    assert report.returncode == 0, report.stderr
    reports = work / "study" / "debug" / "reports" / "default"
    assert QUICK in (reports / "report.md").read_text()
    for figure in ("val_loss", "samples"):
        assert (reports / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (reports / f"{figure}.svg").read_bytes()[:500]

    usage = _run(bindir, work, "flowstudy-train", "--help").stdout
    assert "debug: overfit, profile, quick" in usage and "hparams_search: lr_optuna" in usage
    assert 'eval "$(flowstudy-train -sc install=bash)"' in usage

    assert _complete(bindir, work, "flowstudy-train", "flowstudy-train arch=") == [
        "arch=dit", "arch=mlp", "arch=unet"]
    offered = _complete(bindir, work, "flowstudy-train", "flowstudy-train ")
    assert {"arch=", "flow=", "dataset=", "aug=", "ablation=", "debug=", "hparams_search=",
            "train.", "seed="} <= set(offered)
    assert not [w for w in offered if "schema" in w]
    assert _complete(bindir, work, "flowstudy-report", "flowstudy-report --study study/debug "
                                                       "--group ") == ["default"]
