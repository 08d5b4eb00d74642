"""``python -m flowstudy.sample`` on a trained checkpoint: a steps sweep without retraining,
and its one-line errors."""

from __future__ import annotations

import json
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
