"""Issue 20: the edges of provenance, sweeps and the documented commands, as a user meets them:
real subprocesses on real files. Each test names its case of the issue."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY, cli

pytestmark = pytest.mark.slow

QUICK = [*TINY, "train.epochs=1", "wandb.mode=disabled", "train.threads=1"]


def _error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("flowstudy: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0].removeprefix("flowstudy: error: ")


# --- case 1: keys added with + or deleted with ~ ------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (["+lr=0.5"], "lr=0.5 is not a known key; allowed at the top level: arch, flow, dataset,"),
    (["+train.lrr=0.5"], "train.lrr=0.5 is not a known key; allowed in train: epochs,"),
    (["+trian.lr=0.5"], "trian.lr=0.5 is not a known key; allowed at the top level: arch,"),
    (["++foo=1"], "foo=1 is not a known key; allowed at the top level:"),
    (["~train"], "~train: train is part of the config and cannot be deleted; set its keys instead"),
    (["-m", "+train.lrr=0.5,1"], "train.lrr=0.5 is not a known key; allowed in train:"),
])
def test_unknown_keys_are_refused_whichever_prefix(tmp_path: Path, args: list[str],
                                                   expected: str) -> None:
    deleting = args[0].startswith("~")  # a deleted section takes no keys after it
    proc = cli([*args, *(["wandb.mode=disabled"] if deleting else QUICK)], tmp_path, timeout=120)
    assert _error_line(proc).startswith(expected)
    assert not (tmp_path / "study").exists()


def test_sample_refuses_unknown_keys(tmp_path: Path) -> None:
    proc = cli(["resume=x.pt", "+sample.stepz=4"], tmp_path, timeout=120,
               module="flowstudy.sample")
    assert _error_line(proc).startswith("sample.stepz=4 is not a known key; allowed in sample:")
