"""``python -m flowstudy.sample`` on a trained checkpoint: a steps sweep without retraining,
and its one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import flowstudy

from ..helpers import TINY, cli, name_of

pytestmark = pytest.mark.e2e


NAME = name_of(TINY)


@pytest.mark.slow
def test_sample_sweeps_steps_without_retraining_or_touching_the_result(trained: Path) -> None:
    result = trained / f"study/runs/{NAME}/result.json"
    before = result.read_bytes()
    best = trained / f"study/checkpoints/{NAME}/best.pt"
    done = cli(["-m", f"resume={best}", "sample.steps=1,4", "sample.n=100",
                f"hydra.sweep.dir={trained / 'multi'}"], cwd=trained, module="flowstudy.sample")
    assert done.returncode == 0, done.stderr
    assert result.read_bytes() == before
    records = {r["sample"]["steps"]: r for r in
               (json.loads(p.read_text()) for p in (best.parent / "eval").glob("*.json"))}
    assert sorted(records) == [1, 4]
    for steps, record in records.items():
        assert record["nfe"] == steps and record["n"] == 100
        assert record["sample"]["solver"] == "euler"  # the run's own solver, not changed
        assert record["metrics"]["w2"] > record["metrics"]["w2_floor"] > 0
        samples = torch.load(record["samples"])
        # The command's samples are the public API's, bitwise.
        assert torch.equal(samples, flowstudy.load(best).sample(100, steps=steps, seed=0))
    # More steps, better samples: the NFE-vs-quality trade the sweep exists to show.
    assert records[4]["metrics"]["w2"] < records[1]["metrics"]["w2"]
    report = cli([f"--study={trained / 'study'}"], cwd=trained, module="flowstudy.report")
    assert report.returncode == 0, report.stderr
    text = (trained / "study/reports/default/report.md").read_text()
    assert "## Sampling cost vs quality" in text
    assert f"| {NAME} | " in text.split("## Sampling cost vs quality")[1]


def test_sample_rejects_bad_input_in_one_line(tmp_path: Path, trained: Path) -> None:
    missing = cli(["resume=nope.pt"], cwd=tmp_path, module="flowstudy.sample")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "flowstudy: error: resume=nope.pt: no such file"
    best = trained / f"study/checkpoints/{NAME}/best.pt"
    bad = cli([f"resume={best}", "sample.solver=heun"], cwd=tmp_path, module="flowstudy.sample")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("flowstudy: error: sample.solver='heun' is not allowed: one of "
                                  "euler, midpoint, rk4, dopri5")


def test_sample_bounds_dopri5_reports_its_steps_and_names_the_eval_dir(tmp_path: Path,
                                                                        trained: Path) -> None:
    """Issue 21 items 8 and 14, on a copy of the checkpoint (its eval/ is its own)."""
    copy = tmp_path / "run" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(trained / f"study/checkpoints/{NAME}/best.pt", copy)
    out = f"hydra.run.dir={tmp_path / 'out'}"
    stuck = cli([f"resume={copy}", "sample.solver=dopri5", "sample.atol=1e-12",
                 "sample.rtol=1e-12", "sample.max_steps=20", "sample.likelihood=false", out],
                cwd=tmp_path, module="flowstudy.sample")
    assert stuck.returncode == 2
    assert "Traceback" not in stuck.stderr
    assert "sampling 128 points with dopri5 (atol 1e-12, rtol 1e-12, at most 20 steps), then " \
        "measuring them" in stuck.stdout + stuck.stderr
    assert re.fullmatch(r"flowstudy: error: sample\.max_steps=20 reached: dopri5 at "
                        r"atol=1e-12, rtol=1e-12 had carried the samples to t=0\.\d{3} of 1; "
                        r"loosen sample\.atol and sample\.rtol, or raise sample\.max_steps",
                        stuck.stderr.strip().splitlines()[-1])
    done = cli([f"resume={copy}", "sample.solver=dopri5", "sample.n=100",
                "sample.likelihood=false", out], cwd=tmp_path, module="flowstudy.sample")
    assert done.returncode == 0, done.stderr
    (path,) = (copy.parent / "eval").glob("*dopri5*.json")
    record = json.loads(path.read_text())
    assert record["nfe"] == 2 + 6 * record["solver_steps"] and record["solver_steps"] > 1
    # Root writes anywhere, so a file where eval/ goes stands for a read-only directory.
    shutil.rmtree(copy.parent / "eval")
    (copy.parent / "eval").write_text("")
    blocked = cli([f"resume={copy}", out], cwd=tmp_path, module="flowstudy.sample")
    assert (blocked.returncode, blocked.stderr.strip()) == (
        2, f"flowstudy: error: resume={copy}: {copy.parent / 'eval'} is not a writable "
           f"directory (File exists)")
