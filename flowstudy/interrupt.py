"""Graceful stop on SIGINT/SIGTERM (Ctrl-C, a cluster's pre-emption notice).

The first signal asks the training loop to stop after its current step (it then writes
``last.pt``); a second one aborts at once. Files are written atomically, so an abort mid-write
leaves the previous file in place.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Training stopped on request after saving its state; carries the signal and checkpoint."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; state saved to {checkpoint}")
        self.signum, self.checkpoint = signum, checkpoint
        self.command = ""  # the CLI fills in the command that resumes the run


class StopRequest:
    """While active, the first SIGINT/SIGTERM sets ``signum``; a second raises KeyboardInterrupt.

    Signal handlers can only be installed from the main thread; elsewhere this is inert.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # second signal: abort now
        self.signum = signum
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
