"""Where metrics go: ``metrics.jsonl`` (always) and W&B (offline by default), behind one ``log``.

``Tracker`` is a context manager that always finishes the W&B run: on an exception the run is
tagged with its status (``failed``, ``interrupted`` or ``diverged``) and the error goes into its
notes before the exception propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from flowstudy.alerts import NO_COMMANDS, Alert, Commands, for_error
from flowstudy.config import Config, WandbConfig, to_dict
from flowstudy.errors import ConfigError, UserError
from flowstudy.fileio import atomic_path
from flowstudy.metrics import VALIDATION_VALUES
from flowstudy.results import status_for

log = logging.getLogger(__name__)

# Summaries of these keep their minimum (W&B's default is the last value).


def _truncate_jsonl(source: Path, last_step: int, path: Path) -> None:
    """``source``'s records up to ``last_step`` into ``path``: a resumed run replays the later
    steps itself, and a branch starts from its parent's history up to where it branched off."""
    if not source.exists():
        path.unlink(missing_ok=True)
        return
    lines = [line for line in source.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            step = record["step"]
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines) - 1:  # a kill -9 or a full disk tore the last write: drop it
                log.warning("%s: its last line is incomplete (%r); dropped (the run logs that "
                            "step again)", source, line[:60])
                break
            raise UserError(f"{source}: line {i + 1} is not a metrics record ({e}); move the "
                            f"file away to resume without its history") from e
        if step <= last_step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def effective_mode(cfg: WandbConfig) -> WandbConfig:
    """``cfg`` with the mode the run uses: ``wandb.mode``, unless the environment says
    ``WANDB_MODE=disabled``. W&B itself lets ``wandb.init``'s mode override the variable, but
    turning W&B off wins wherever it is asked for; other values of WANDB_MODE are ignored."""
    if os.environ.get("WANDB_MODE") == "disabled" and cfg.mode != "disabled":
        return dataclasses.replace(cfg, mode="disabled")
    return cfg


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_online(cfg: WandbConfig) -> None:
    """``wandb.mode=online`` needs credentials for the W&B host: without them W&B fails (or
    prompts) only once the run has started, so refuse before any work. The host and the key are
    found as W&B finds them: WANDB_BASE_URL or ``base_url`` in W&B's settings files (what
    ``wandb login --host`` writes), then WANDB_API_KEY, an identity token file, the settings'
    ``api_key``, or the netrc entry W&B reads for that host."""
    if cfg.mode != "online" or os.environ.get("WANDB_API_KEY") or os.environ.get(
            "WANDB_IDENTITY_TOKEN_FILE"):
        return
    from wandb.sdk import wandb_setup  # imported here: only an online run needs it
    from wandb.sdk.lib import wbauth

    settings = wandb_setup.singleton().settings
    try:
        host = wbauth.HostUrl(settings.base_url)
        if settings.api_key or wbauth.read_netrc_auth(host=host):
            return
    except Exception as e:  # W&B's own errors: a malformed URL, a malformed key in the netrc
        raise ConfigError("wandb.mode", cfg.mode, f"offline or disabled here: W&B cannot use "
                          f"its credentials for {settings.base_url} ({e})") from e
    raise ConfigError("wandb.mode", cfg.mode, f"offline or disabled here: no W&B API key for "
                      f"{host.url} (run `wandb login` or set WANDB_API_KEY)")


class Tracker:
    def __init__(self, cfg: Config, run_dir: str | os.PathLike[str], metrics_path: Path,
                 lineage: list[dict[str, Any]], swept: dict[str, Any] | None = None,
                 resume_step: int | None = None, resume_run_id: str | None = None,
                 fork_run_id: str | None = None, history: Path | None = None,
                 commands: Commands = NO_COMMANDS) -> None:
        """``resume_run_id``: continue that W&B run, rewound to ``resume_step``; ``fork_run_id``:
        a new W&B run forked off that one at ``resume_step``, with the history of ``history``
        (the parent's metrics.jsonl) up to it. ``commands``: what started the run, for the
        commands its alerts give."""
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        # W&B warns on the terminal, before its silent setting applies, if its dir is missing.
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_jsonl(history or metrics_path, resume_step, metrics_path)
        at = f"?_step={resume_step}"
        parent = lineage[-1]["parent"]
        self._jsonl: TextIO | None = open(metrics_path, "a")  # noqa: SIM115 - closed in finish()
        self.run: Any = None  # the W&B run, once the sender thread has started it
        self._ready = threading.Event()
        self._quiet = cfg.wandb.quiet
        self._name, self._lr, self._commands = cfg.name, cfg.train.lr, commands
        self._init_timeout = cfg.wandb.init_timeout
        self._init = dict(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            name=cfg.name,
            group=cfg.group,
            # A sweep's runs carry its varied keys, to filter them in the W&B UI.
            job_type="sweep" if swept else "train",
            tags=[*cfg.wandb.tags, *(f"{k}={v}"[:64] for k, v in (swept or {}).items())],
            config={**to_dict(cfg), "lineage": lineage},
            notes=(f"branched off {parent['name']} (W&B run {parent['wandb_run_id']}) at step "
                   f"{parent['step']} from {parent['checkpoint']}" if parent else None),
            dir=str(run_dir),
            mode=cfg.wandb.mode,
            # W&B's rewind and fork (W&B calls both preview features): a continued run's history
            # is cut back to the checkpoint's step, so the replayed steps are logged once; a
            # branch is a run of its own that shows its parent's history up to the branch point.
            resume_from=resume_run_id and f"{resume_run_id}{at}",
            fork_from=fork_run_id and f"{fork_run_id}{at}",
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
            settings = wandb.Settings(console="off", silent=self._quiet,
                                      init_timeout=self._init_timeout)
            try:
                self.run = self._start(wandb, settings)
            except Exception as e:
                if self._init["mode"] != "online":
                    raise
                # No network (or a server that refuses): the run is kept offline rather than
                # lost, and said once, not after a silent wait at the first checkpoint.
                self._init["mode"] = "offline"
                self.run = self._start(wandb, settings)
                sync_dir = os.path.relpath(self.run.settings.sync_dir)
                log.warning("W&B could not start the run online within wandb.init_timeout=%gs "
                            "(%s); logging offline instead, upload it later with: wandb sync %s",
                            self._init_timeout, _first_line(e), sync_dir)
            for key in VALIDATION_VALUES:
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

    def _start(self, wandb: Any, settings: Any) -> Any:
        try:
            return wandb.init(**self._init, settings=settings)
        except Exception as e:
            branch_point = self._init["resume_from"] or self._init["fork_from"]
            if not branch_point:
                raise
            # A W&B server without rewind/fork (preview features) refuses them: continue the
            # run by id, or start the branch as a plain new run; the lineage in the config still
            # names the parent.
            log.warning("W&B refused the branch point %s (%s); starting without it",
                        branch_point, e)
            resume_id = self._init["resume_from"] and branch_point.split("?")[0]
            return wandb.init(**{**self._init, "resume_from": None, "fork_from": None,
                                 "id": resume_id, "resume": resume_id and "allow"},
                              settings=settings)

    @property
    def run_id(self) -> str | None:
        """The W&B run's id; None when W&B could not start (the run goes on without it)."""
        self._ready.wait()
        return None if self.run is None else self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._jsonl is not None:
            try:
                self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
                self._jsonl.flush()
            except OSError as e:  # a full disk must not stop training: say so once
                log.warning("could not write %s (%s); metrics go to W&B only from step %d",
                            self._jsonl.name, e.strerror or e, step)
                self._close_jsonl()
        self._outbox.put(lambda: self.run.log(metrics, step=step))

    def _close_jsonl(self) -> None:
        jsonl, self._jsonl = self._jsonl, None
        with contextlib.suppress(OSError):  # closing flushes what the full disk refused
            jsonl.close()

    def summary(self, values: dict[str, Any]) -> None:
        self._outbox.put(lambda: self.run.summary.update(values))

    def alert(self, alert: Alert) -> None:
        """One warning line in the log, and ``wandb.alert``: W&B notifies you of an online run;
        an offline one keeps the alert in its ``.wandb`` file."""
        log.warning("alert (%s): %s", alert.title, alert.text)
        self._outbox.put(lambda: self.run.alert(title=alert.title, text=alert.text,
                                                level=alert.level))

    def image(self, key: str, path: Path, step: int, caption: str) -> None:
        def send() -> None:
            import wandb

            self.run.log({key: wandb.Image(str(path), caption=caption)}, step=step)

        self._outbox.put(send)

    def finish(self, error: BaseException | None = None) -> None:
        if self._jsonl is not None:
            self._close_jsonl()
        alert = for_error(error, self._name, self._lr, self._commands,
                          in_sweep=self._init["job_type"] == "sweep")
        if alert is not None:
            self.alert(alert)
        self._outbox.put(None)
        self._sender.join()
        if self.run is None:  # the results are in result.json and metrics.jsonl all the same
            log.warning("W&B could not start a run (%s); nothing was logged to W&B",
                        self._send_error)
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

    def alert(self, alert: Alert) -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
