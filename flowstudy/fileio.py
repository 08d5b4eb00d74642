"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowstudy.errors import Busy, UserError

_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = socket.gethostname().replace(".", "_")


def _remove_orphans(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers on this host that have died (a killed
    save): ``.<name>.<host>.<pid>.<random>.tmp``."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}.*.tmp"):
        pid = tmp.name[len(f".{path.name}.{_HOST}."):].split(".")[0]
        if pid.isdigit() and not alive(int(pid)):
            tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` on this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the body has written it, move it into place.

    If the body raises (disk full, a signal) the temporary file is removed and ``path`` keeps
    its previous content; one left by a process killed mid-write is removed by the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.",
                                    suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from co-workers
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike[str], what: str, fix: str) -> Any:
    """A JSON file's content, or one line naming the file, what it should be and ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise UserError(f"{path}: not a readable {what} ({reason}); {fix}") from e


def _prove_writable(path: Path) -> None:
    """Create ``path`` if needed and write (and drop) a file there; OSError where either fails."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass


def redirect_home_caches(fallback: Path) -> None:
    """W&B's core keeps its debug log under ~/.cache ($XDG_CACHE_HOME) and matplotlib its cache
    under ~/.config/matplotlib ($MPLCONFIGDIR); where HOME is read-only they print a dozen lines
    of warnings instead. Point them at ``fallback`` then: both read these variables when they
    start (W&B's core is a process of its own, matplotlib is imported only to draw)."""
    home = Path.home()
    for variable, default, used in (("XDG_CACHE_HOME", home / ".cache", "wandb/logs"),
                                    ("MPLCONFIGDIR", home / ".config" / "matplotlib", "")):
        try:
            _prove_writable(Path(os.environ.get(variable) or default) / used)
        except OSError:
            os.environ[variable] = str(fallback / variable.lower())


def ensure_writable_dir(path: Path, key: str) -> None:
    """Create ``path`` if needed and prove a file can be written there, before any work starts."""
    try:
        _prove_writable(path)
    except OSError as e:
        raise UserError(f"{key}: {path} is not a writable directory ({e.strerror or e})") from e


@contextmanager
def run_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released even if the process dies), or refuse."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "another process"
            raise Busy(f"{what} is already running ({holder}; lock {path}); wait for it or "
                            f"give this run another name=") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        try:
            yield
        finally:  # removed while still held, whatever ended the run: a refusal leaves no .lock
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextmanager
def removed_if_failed(*dirs: Path) -> Iterator[None]:
    """Directories a command creates and then fails in leave no trace: on an error, each of
    ``dirs`` and their parents that did not exist before is removed if it is empty (whatever
    was written in one stays, with the directories above it)."""
    new = sorted({p for d in dirs for p in (d, *d.parents) if not p.exists()},
                 key=lambda p: len(p.parts), reverse=True)
    try:
        yield
    except BaseException:
        for p in new:
            with contextlib.suppress(OSError):  # not empty: it holds something worth keeping
                p.rmdir()
        raise
