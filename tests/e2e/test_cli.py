"""One run through the real command line (``python -m flowstudy.train``): what it writes, and
the one-line errors it exits with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstudy.checkpoint import Checkpoint

from ..helpers import TINY, cli, name_of

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("args", "expected"), [
    (["train.lr=(1"], "'train.lr=(1' is not a valid override (extraneous input '('); quote a "
     "value holding spaces, brackets or commas, e.g. 'name=\"a b\"'"),
    (["train.lr=1", "2"], "'2' is not an override (key=value); quote a value holding spaces, "
     "brackets or commas, e.g. 'name=\"a b\"'"),
    (["hydra.run.dir=afile"], "afile: File exists; hydra.run.dir (hydra.sweep.dir with -m) must "
     "be a directory that can be created and written"),
])
def test_command_line_mistakes_are_one_line_with_exit_2(tmp_path: Path, args: list[str],
                                                        expected: str) -> None:
    (tmp_path / "afile").write_text("")
    proc = cli([f"study_dir={tmp_path / 'study'}", *args], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"flowstudy: error: {expected}")
    assert not (tmp_path / "study").exists()


TINY_NAME = name_of(TINY)


def test_an_unwritable_checkpoint_dir_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli([*TINY, f"study_dir={tmp_path / 'study'}", f"checkpoint.dir={blocker}/ckpts",
                f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"flowstudy: error: checkpoint.dir: {blocker}/ckpts/"
                                   f"{TINY_NAME} is not a writable directory "
                                   f"(Not a directory)")
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_the_quick_preset_runs_end_to_end_and_records_what_it_resolved(tmp_path: Path) -> None:
    args = ["experiment=quick", "wandb.mode=disabled", "train.threads=1"]
    first = cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    name = "quick-mlp-ot-moons-none"
    result = json.loads((tmp_path / "study" / "runs" / name / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 2
    r = result["resolved"]
    assert (r["n_train"], r["batch_size"], r["steps_per_epoch"]) == (20_000, 256, 78)
    assert result["steps"] == 2 * 78 and r["arch"]["width"] == 256
    assert result["config"]["train"]["batch_size"] is None  # the identity is what was asked
    log = (next(tmp_path.glob("outputs/*/*/train.log"))).read_text()
    assert "resolved: split 20000/1000/1000" in log
    assert "train.warmup_steps" not in log  # 10 warmup steps < 156 planned: no warning
    ckpt = Checkpoint.load(tmp_path / "study" / "checkpoints" / name / "best.pt")
    assert ckpt.resolved == r
    again = cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "skipping quick-mlp-ot-moons-none" in again.stderr + \
        again.stdout
