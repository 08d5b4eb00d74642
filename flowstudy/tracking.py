"""Where metrics go: ``metrics.jsonl`` (always) and W&B (offline by default), behind one ``log``.

``Tracker`` is a context manager that always finishes the W&B run: on an exception the run is
tagged with its status (``failed``, ``interrupted`` or ``diverged``) and the error goes into its
notes before the exception propagates.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from flowstudy.config import Config, to_dict
from flowstudy.fileio import atomic_path
from flowstudy.results import status_for

log = logging.getLogger(__name__)

# Summaries of these keep their minimum (W&B's default is the last value).
MINIMISED = ("val/raw_loss", "val/ema_loss")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after ``last_step``: a resumed run replays those steps itself."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


class Tracker:
    def __init__(self, cfg: Config, run_dir: str | os.PathLike[str], metrics_path: Path,
                 swept: dict[str, Any] | None = None, resume_run_id: str | None = None,
                 resume_step: int | None = None) -> None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        # W&B warns on the terminal, before its silent setting applies, if its dir is missing.
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_jsonl(metrics_path, resume_step)
        self._jsonl = open(metrics_path, "a")  # noqa: SIM115 - closed in finish()
        self.run: Any = None  # the W&B run, once the sender thread has started it
        self._ready = threading.Event()
        self._quiet = cfg.wandb.quiet
        self._init = dict(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            name=cfg.name,
            group=cfg.group,
            # A sweep's runs carry its varied keys, to filter them in the W&B UI.
            job_type="sweep" if swept else "train",
            tags=[*cfg.wandb.tags, *(f"{k}={v}"[:64] for k, v in (swept or {}).items())],
            config=to_dict(cfg),
            dir=str(run_dir),
            mode=cfg.wandb.mode,
            id=resume_run_id,
            resume="allow" if resume_run_id else None,
            # A worker process that runs several jobs must never continue the previous W&B run.
            reinit="finish_previous",
        )
        # Starting W&B takes about a second, and each wandb.log call milliseconds of Python: a
        # sender thread starts the run, then makes the calls in order while training goes on.
        # metrics.jsonl is written at once; finish() waits for the sender.
        self._outbox: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._send_error: Exception | None = None
        self._sender = threading.Thread(target=self._send, name="flowstudy-wandb", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        try:
            import wandb  # imported here: half a second that training need not wait for

            # flowstudy prints its own progress; W&B capturing stdout/stderr would only slow it,
            # and its ~30 lines per run would bury a sweep's (finish() says where the run went).
            settings = wandb.Settings(console="off", silent=self._quiet)
            self.run = wandb.init(**self._init, settings=settings)
            for key in MINIMISED:
                self.run.define_metric(key, summary="min")
        except Exception as e:  # surfaced by run_id and finish()
            self._send_error = e
        finally:
            self._ready.set()
        while (call := self._outbox.get()) is not None:
            if self._send_error is None:
                try:
                    call()
                except Exception as e:  # reported by finish(); later calls are dropped
                    self._send_error = e

    @property
    def run_id(self) -> str:
        self._ready.wait()
        if self.run is None:
            raise RuntimeError(f"W&B could not start a run: {self._send_error}")
        return self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self._jsonl.flush()
        self._outbox.put(lambda: self.run.log(metrics, step=step))

    def summary(self, values: dict[str, Any]) -> None:
        self._outbox.put(lambda: self.run.summary.update(values))

    def image(self, key: str, path: Path, step: int, caption: str) -> None:
        def send() -> None:
            import wandb

            self.run.log({key: wandb.Image(str(path), caption=caption)}, step=step)

        self._outbox.put(send)

    def finish(self, error: BaseException | None = None) -> None:
        self._jsonl.close()
        self._outbox.put(None)
        self._sender.join()
        if self.run is None:  # W&B never started: say so, unless the run failed anyway
            if error is None:
                raise RuntimeError(f"W&B could not start a run: {self._send_error}")
            return
        if self._send_error is not None:
            log.warning("some W&B logging failed: %s", self._send_error)
        if error is not None:
            self.run.tags = (*self.run.tags, status_for(error))
            self.run.notes = f"{type(error).__name__}: {error}"
        self.run.finish(exit_code=0 if error is None else 1)
        if self._quiet:
            self._say_where()

    def _say_where(self) -> None:
        """The one line that replaces W&B's own: where the run is, and how to upload it."""
        if self._init["mode"] == "offline":
            sync_dir = os.path.relpath(self.run.settings.sync_dir)
            log.info("W&B run saved offline in %s (upload: wandb sync %s)", sync_dir, sync_dir)
        elif self._init["mode"] == "online":
            log.info("W&B run: %s", self.run.url)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exc)


class NullTracker:
    """The tracker of ranks other than 0 under torchrun: they log nothing."""

    run_id = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
