"""What a new or hostile user reaches second (small data, damaged files, reports,
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


def _damaged_checkpoint(path: Path, case: str) -> Path:
    from flowstudy.checkpoint import FORMAT_VERSION, TRAIN_KEYS
    from flowstudy.config import to_dict
    from tests.helpers import compose_config

    config = to_dict(compose_config([]))
    content = {"format_version": FORMAT_VERSION, "rng": {}, **{k: {} for k in TRAIN_KEYS},
               "config": config}
    if case == "format":
        content["format_version"] = "1"
    elif case == "no_arch":
        del config["arch"]
    else:
        content["config"] = "junk"
    torch.save(content, path)
    return path


@pytest.mark.parametrize("module", ["flowstudy.train", "flowstudy.sample"])
@pytest.mark.parametrize(("case", "problem"), [
    ("format", "its format_version is '1', expected an integer"),
    ("no_arch", "its config lacks a valid arch (each a mapping naming one of its options)"),
    ("config_str", "its config is a str, expected the run's config (a mapping)"),
])
def test_a_damaged_checkpoint_is_one_line_in_resume_and_sample(tmp_path, module, case,
                                                               problem):
    """Case 5: the checkpoint's header is read and checked before any work, in both readers."""
    path = _damaged_checkpoint(tmp_path / "best.pt", case)
    args = [f"resume={path}", f"hydra.run.dir={tmp_path / 'out'}"]
    if module == "flowstudy.train":
        args += [*QUICK, f"study_dir={tmp_path / 'study'}"]
    done = cli(args, tmp_path, module=module)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"flowstudy: error: resume={path}: damaged checkpoint, {problem}"]


def test_a_one_column_file_trains_plots_and_reports(tmp_path):
    """Case 2: [N, 1] data draw as a histogram (the run) and a jittered strip (the report)."""
    torch.save(torch.randn(200, 1, generator=torch.Generator().manual_seed(0)),
               tmp_path / "x1.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'x1.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _result(tmp_path)["status"] == "completed"
    shown = cli(["--study", str(tmp_path / "study")], tmp_path, module="flowstudy.report")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert (tmp_path / "study" / "reports" / "default" / "samples.png").exists()


def test_a_tensor_file_saved_with_requires_grad_trains(tmp_path):
    """Case 3: the file's autograd history is dropped on load; training passes epoch 1."""
    torch.save(torch.randn(200, 3, requires_grad=True) * 1.0, tmp_path / "g.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'g.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _result(tmp_path)["status"] == "completed"
