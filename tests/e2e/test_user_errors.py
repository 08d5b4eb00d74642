"""Issue 21: what a new or hostile user reaches second (small data, damaged files, reports,
searches) ends in one line and a non-zero exit, or a documented behaviour; never a traceback.
Each test runs the real CLI in a subprocess, on the smallest run that shows the case."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import cli

pytestmark = pytest.mark.slow

QUICK = ["debug=quick", "train.threads=1"]


def _where(tmp_path: Path) -> list[str]:
    return [f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}"]


def _result(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "study").glob("runs/*/result.json")
    return json.loads(path.read_text())


def test_four_samples_complete_with_undefined_metrics_nan(tmp_path):
    """Case 1: sample.n=4 is allowed, so the run completes; the k-NN density/coverage and the
    C2ST need more points and are NaN, said in one warning."""
    done = cli([*QUICK, "sample.n=4", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert ("density, coverage, c2st: NaN, not defined at this n (4 points per set; "
            "density/coverage need 6, c2st need 10)") in done.stdout + done.stderr
    result = _result(tmp_path)
    assert result["status"] == "completed"
    assert math.isnan(result["metrics"]["density"])
    assert result["metrics"]["w2"] >= 0


def test_eight_row_file_completes(tmp_path):
    """Case 1: an 8-row file (auto split 4/2/2) trains and evaluates what 2 points define."""
    torch.save(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), tmp_path / "r8.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'r8.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "precision, recall, density, coverage, c2st: NaN, not defined at this n (2 points" \
        in done.stdout + done.stderr
    assert _result(tmp_path)["status"] == "completed"
