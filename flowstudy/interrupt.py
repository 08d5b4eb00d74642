"""Stopping on SIGINT/SIGTERM/SIGHUP (Ctrl-C, a cluster's pre-emption notice, a closed terminal)
at any point of a run, with a truthful status.

Inside the training loop the first signal asks the loop to stop after its current step (it then
writes ``last.pt``); anywhere else (building the data, evaluating, finishing W&B) it stops the run
at once. A second signal always aborts at once. Files are written atomically, so an abort
mid-write leaves the previous file in place.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """The run stopped on a signal: after saving its state to ``checkpoint`` (training), or at
    once while ``during`` something else."""

    def __init__(self, signum: int, checkpoint: str | None, during: str = "training") -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; state saved to {checkpoint}" if checkpoint
                         else f"stopped by {name} while {during}")
        self.signum, self.checkpoint, self.during = signum, checkpoint, during
        self.trained = False  # training had finished: rerunning only evaluates
        self.command = ""  # the CLI fills in the command that continues the run


class StopRequest:
    """While active, a signal stops the run: in a ``deferring()`` block (the training loop) the
    first one only sets ``signum``, elsewhere it raises ``Interrupted`` at once; a second one
    raises KeyboardInterrupt. ``phase`` says what the run is doing, for the message.

    Signal handlers can only be installed from the main thread; elsewhere this is inert.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = "starting"
        self._deferring = False
        self._previous: dict[int, object] = {}

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # second signal: abort now
        self.signum = signum
        if not self._deferring:
            raise Interrupted(signum, None, self.phase)
        log.warning("%s received: finishing the current step, then saving last.pt "
                    "(send it again to abort at once)", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def stop_from_the_start() -> Iterator[None]:
    """From the command's first line on, a signal stops it in one line (exit 128 + signal): not
    a KeyboardInterrupt traceback out of an import, nor nothing at all where the launcher left
    SIGINT ignored (a script's background job), which let the run train on. Each run's own
    ``StopRequest`` takes over while it runs."""
    with StopRequest():
        try:
            yield
        except Interrupted as e:  # before the command line could say it (in an import)
            print(f"flowstudy: {e}", file=sys.stderr)
            sys.exit(128 + e.signum)
