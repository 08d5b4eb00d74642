"""W&B's own terminal output: off by default, back with wandb.quiet=false."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.lineage import segment
from flowstudy.tracking import Tracker

from .helpers import TINY, compose_config


@pytest.mark.parametrize("quiet", [True, False])
def test_wandb_prints_only_when_not_quiet(tmp_path: Path, quiet: bool,
                                          capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    cfg = compose_config([*TINY, "wandb.mode=offline", f"wandb.quiet={str(quiet).lower()}"])
    lineage = [segment(cfg, data_fingerprint(cfg.dataset, tmp_path), None)]
    with Tracker(cfg, tmp_path / "out", tmp_path / "metrics.jsonl", lineage) as tracker:
        tracker.log({"train/loss": 1.0}, step=1)
    captured = capfd.readouterr()
    printed = [line for line in (captured.out + captured.err).splitlines()
               if line.startswith("wandb:")]
    assert bool(printed) is not quiet, printed
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb"))
