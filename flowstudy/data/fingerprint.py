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


def file_sha256(path: str | Path, cache_dir: Path | None = None, save: bool = True) -> str:
    """The sha256 of a file's content, streamed; cached by its resolved path and its stat in
    ``cache_dir`` (written only with ``save``: a run saves it once its data is accepted, so a
    refused file leaves nothing behind)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    stamp = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
             "ctime_ns": st.st_ctime_ns}
    digest = _memo.get(key)
    cache_path = cache_dir / "sha256.json" if cache_dir is not None else None
    if cache_path is None or (digest is not None and not save):
        return digest or _memo.setdefault(key, _hash(p))
    cache = _read_cache(cache_path)
    hit = cache.get(key[0])
    # An entry from before inode and ctime were kept lacks them: it is stale, and rehashed.
    fresh = (isinstance(hit, dict) and isinstance(hit.get("sha256"), str)
             and all(hit.get(k) == v for k, v in stamp.items()))
    if digest is None:
        digest = hit["sha256"] if fresh else _hash(p)
    _memo[key] = digest
    if save and not fresh:
        cache[key[0]] = {**stamp, "sha256": digest}
        with contextlib.suppress(OSError):  # the cache saves time only
            write_json(cache_path, cache)
    return digest


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):  # a damaged cache only costs a rehash
        return {}
    return cache if isinstance(cache, dict) else {}  # valid JSON of another shape ([]): damaged


def data_fingerprint(cfg: DatasetConfig, study_dir: str | Path,
                     save: bool = True) -> dict[str, Any]:
    """``{"sha256": ...}`` for a file, ``{"generator": <dataset settings>}`` for built-in data;
    ``save``: write the hash into the study's cache."""
    if isinstance(cfg, EmbeddingsConfig):
        path = require_file(cfg.path)
        return {"sha256": file_sha256(path, Path(study_dir) / "datasets", save)}
    return {"generator": dataclasses.asdict(cfg)}


def short(digest: str) -> str:
    return digest[:12]
