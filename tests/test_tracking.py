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


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path: Path) -> None:
    # Kill -9 or a full disk leaves half a line at the end
    from flowstudy.tracking import _truncate_jsonl

    source = tmp_path / "metrics.jsonl"
    source.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a"')
    _truncate_jsonl(source, 2, source)
    assert source.read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n'


def test_a_damaged_metrics_line_inside_the_file_is_one_line(tmp_path: Path) -> None:
    from flowstudy.errors import UserError
    from flowstudy.tracking import _truncate_jsonl

    source = tmp_path / "metrics.jsonl"
    source.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(UserError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        _truncate_jsonl(source, 3, source)
