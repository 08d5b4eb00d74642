"""debug=profile: a profiler trace of the requested steps."""

from __future__ import annotations

import json
from pathlib import Path

from flowstudy.run import run

from .helpers import TINY, compose_config


def test_profile_writes_a_trace_of_the_requested_steps(tmp_path: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("train.epochs=")]
    cfg = compose_config(["debug=profile", *tiny, "train.profile_steps=3",
                          f"study_dir={tmp_path / 'study'}"])
    assert cfg.train.epochs == 1
    result = run(cfg, tmp_path / "out")
    out = Path(result.checkpoint).parent
    trace = json.loads((out / "trace.json").read_text())
    steps = sorted({e["name"] for e in trace["traceEvents"]
                    if e.get("name", "").startswith("ProfilerStep#")})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]  # 1 skipped, 1 warm-up
    table = (out / "profile.txt").read_text()
    assert "aten::addmm" in table and "Self CPU" in table
    assert result.status == "completed" and result.steps == 8
