"""``train.profile_steps`` (``debug=profile``): a torch.profiler trace of a few training steps.

``profile_steps(n, batches, out_dir)`` wraps the training batches so that each batch the loop
takes advances the profiler by one step: it skips one step, warms up on one and records ``n``.
It writes ``trace.json`` (chrome://tracing or https://ui.perfetto.dev) and ``profile.txt`` (the
ops that took the most time) to ``out_dir``, and logs the table's head.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch.profiler import ProfilerActivity, profile, schedule

from flowstudy.batches import Batch, BatchSource
from flowstudy.fileio import atomic_path

log = logging.getLogger(__name__)


class _ProfiledBatches:
    """The run's batch source, stepping the profiler each time the loop takes the next batch."""

    def __init__(self, batches: BatchSource, profiler: profile) -> None:
        self._batches, self._profiler = batches, profiler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batches, name)

    def epoch(self, *args: Any, **kwargs: Any) -> Iterator[Batch]:
        for batch in self._batches.epoch(*args, **kwargs):
            yield batch
            self._profiler.step()  # the loop has finished the step on this batch


@contextmanager
def profile_steps(steps: int, batches: BatchSource, out_dir: Path) -> Iterator[BatchSource]:
    """Yield the batches to train on: ``batches`` itself when ``steps`` is 0, else a view that
    profiles ``steps`` steps of the training loop."""
    if steps == 0:
        yield batches
        return
    device = batches.train.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    recorded: list[int] = []

    def write(prof: profile) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "trace.json") as tmp:
            prof.export_chrome_trace(str(tmp))
        table = prof.key_averages().table(sort_by=sort, row_limit=25)
        with atomic_path(out_dir / "profile.txt") as tmp:
            tmp.write_text(table + "\n")
        recorded.append(1)
        log.info("profile of %d training steps: %s, %s\n%s", steps, out_dir / "trace.json",
                 out_dir / "profile.txt", "\n".join(table.splitlines()[:12]))

    with profile(activities=activities, record_shapes=True,
                 schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                 on_trace_ready=write) as prof:
        yield _ProfiledBatches(batches, prof)  # type: ignore[misc]
    if not recorded:
        log.warning("train.profile_steps=%d: the run ended before its profiled steps; no trace",
                    steps)
