"""What a run's data is, by content: the sha256 of a user's file, or the generator parameters of
built-in data. A file is hashed once per (path, size, mtime, inode, ctime): the hash is cached in
``<study_dir>/datasets/sha256.json``, so a multi-GB embeddings file costs one read.

Size and mtime alone would miss a same-shape array rewritten in place with its old mtime put back
(``cp -p``, ``rsync -a``, tar, ``os.utime``); the kernel sets ctime on every such write and
rename, and no user call can set it back. What remains: a filesystem that keeps no ctime (some
FUSE and network mounts report 0 or mtime), where such a rewrite still reads as unchanged."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from flowstudy.config import DatasetConfig, EmbeddingsConfig
from flowstudy.data.files import require_file
from flowstudy.fileio import write_json

CHUNK = 1 << 20
_memo: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: str | Path, cache_dir: Path | None = None) -> str:
    """The sha256 of a file's content, streamed; cached by its resolved path and its stat."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    stamp = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
             "ctime_ns": st.st_ctime_ns}
    if key in _memo:
        return _memo[key]
    cache_path = cache_dir / "sha256.json" if cache_dir is not None else None
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):  # a damaged cache only costs a rehash
            cache = {}
    if not isinstance(cache, dict):  # valid JSON of another shape ([]): damaged all the same
        cache = {}
    hit = cache.get(key[0])
    # An entry from before inode and ctime were kept lacks them: it is stale, and rehashed.
    fresh = (isinstance(hit, dict) and isinstance(hit.get("sha256"), str)
             and all(hit.get(k) == v for k, v in stamp.items()))
    if fresh:
        digest = hit["sha256"]
    else:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        if cache_path is not None:
            cache[key[0]] = {**stamp, "sha256": digest}
            with contextlib.suppress(OSError):  # the cache saves time only
                write_json(cache_path, cache)
    _memo[key] = digest
    return digest


def data_fingerprint(cfg: DatasetConfig, study_dir: str | Path) -> dict[str, Any]:
    """``{"sha256": ...}`` for a file, ``{"generator": <dataset settings>}`` for built-in data."""
    if isinstance(cfg, EmbeddingsConfig):
        path = require_file(cfg.path)
        return {"sha256": file_sha256(path, Path(study_dir) / "datasets")}
    return {"generator": dataclasses.asdict(cfg)}


def short(digest: str) -> str:
    return digest[:12]
