"""A run's identity is its lineage: resumes that change settings branch into runs of their own,
data files are fingerprinted, and an unfinished or finished run is never silently replayed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import wandb

from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.data import fingerprint
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.errors import UserError
from flowstudy.interrupt import Interrupted
from flowstudy.lineage import resumed_start
from flowstudy.report import rows_for
from flowstudy.run import run

from .helpers import TINY, compose_config
from .wandb_files import find_run_files, read_run

ONE_EPOCH = [*TINY, "train.epochs=1", "sample.n=64"]


def _config(tmp_path: Path, *overrides: str, wandb_mode: str = "disabled",
            base: tuple[str, ...] = tuple(ONE_EPOCH)) -> Config:
    return compose_config([*base, f"study_dir={tmp_path / 'study'}", f"wandb.mode={wandb_mode}",
                           *overrides])


NO_DATA = tuple(a for a in ONE_EPOCH if not a.startswith("dataset."))


def _files(tmp_path: Path, name: str) -> dict[str, bytes]:
    study = tmp_path / "study"
    return {p.name: p.read_bytes() for d in (study / "checkpoints" / name, study / "runs" / name)
            for p in d.iterdir() if p.is_file()}


def test_a_resume_that_changes_settings_is_a_new_run_and_overwrites_nothing(
        tmp_path: Path) -> None:
    # The sequence: lr=1e-3, then name=foo lr=5e-3, then resume foo with epochs=2.
    a = run(_config(tmp_path, "train.lr=1e-3"), tmp_path / "out")
    run(_config(tmp_path, "name=foo", "train.lr=5e-3"), tmp_path / "out")
    before_a, before_foo = _files(tmp_path, a.name), _files(tmp_path, "foo")
    foo_best = tmp_path / "study" / "checkpoints" / "foo" / "best.pt"

    branch = run(_config(tmp_path, "train.epochs=2", "train.lr=5e-3", f"resume={foo_best}"),
                 tmp_path / "out")
    assert branch.name == "foo+epochs2" and branch.status == "completed" and branch.epochs == 2
    assert _files(tmp_path, a.name) == before_a and _files(tmp_path, "foo") == before_foo
    assert [s["parent"] is None for s in branch.lineage] == [True, False]
    assert branch.lineage[1]["parent"]["sha256"] == \
        hashlib.sha256(before_foo["best.pt"]).hexdigest()

    # The same resume again is this very run: skipped as completed.
    again = run(_config(tmp_path, "train.epochs=2", "train.lr=5e-3", f"resume={foo_best}"),
                tmp_path / "out")
    assert again.skipped
    # A fresh run with the branch's settings was never trained: it trains under its own name.
    fresh = run(_config(tmp_path, "train.epochs=2", "train.lr=5e-3"), tmp_path / "out")
    assert not fresh.skipped and fresh.status == "completed" and fresh.name != branch.name
    # ...and the report does not fold the branch in as another seed of it.
    rows = rows_for([branch, fresh])
    assert [len(r.runs) for r in rows] == [1, 1]

    # The branch's name from another checkpoint is another run: refused, nothing replaced.
    a_best = tmp_path / "study" / "checkpoints" / a.name / "best.pt"
    with pytest.raises(UserError, match=r"run 'foo\+epochs2' in .* was trained with a different "
                                        r"config \(lineage=branched off foo at step 8 "):
        run(_config(tmp_path, "name=foo+epochs2", "train.epochs=2", "train.lr=5e-3",
                    f"resume={a_best}"), tmp_path / "out")


def test_a_resume_cannot_take_another_seed(tmp_path: Path) -> None:
    first = run(_config(tmp_path), tmp_path / "out")
    best = tmp_path / "study" / "checkpoints" / first.name / "best.pt"
    with pytest.raises(UserError) as err:
        run(_config(tmp_path, "name=r7", "seed=7", "train.epochs=2", f"resume={best}"),
            tmp_path / "out")
    assert str(err.value) == (
        f"seed=7: a resumed run continues the random state of {best} (trained with seed=0), "
        f"so it cannot take another seed; drop seed= to resume, or train a fresh run (no "
        f"resume=) for seed 7")
    assert not (tmp_path / "study" / "runs" / "r7").exists()

    # A checkpoint from before lineages were recorded resumes as one segment, data unknown.
    legacy = dataclasses.replace(Checkpoint.load(best), lineage=None)
    legacy.save(tmp_path / "legacy.pt")
    legacy = Checkpoint.load(tmp_path / "legacy.pt")
    cfg = _config(tmp_path, "train.epochs=2", f"resume={tmp_path / 'legacy.pt'}")
    start = resumed_start(cfg, data_fingerprint(cfg.dataset, tmp_path), legacy, cfg.resume)
    assert start.branch and start.name == f"{first.name}+epochs2"
    assert start.lineage[0]["data"] is None and start.lineage[1]["data"] is not None

    # Resuming a finished run unchanged would replay it: refused, with what to do instead.
    with pytest.raises(UserError, match=r"already completed with this config \(max_epochs after "
                                        r"1 epochs\): resuming it unchanged would replay"):
        run(_config(tmp_path, f"resume={best}"), tmp_path / "out")


def _interrupt_when(path: Path, text: str) -> None:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()


def test_an_interrupted_run_is_continued_or_restarted_only_when_asked_and_w_and_b_follows(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, "dataset.size=1500", "train.epochs=2", wandb_mode="offline")
    metrics = tmp_path / "study" / "runs" / cfg.name / "metrics.jsonl"
    last = tmp_path / "study" / "checkpoints" / cfg.name / "last.pt"
    _interrupt_when(metrics, '"epoch": 1')
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "out1")
    wandb.teardown()
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]

    # A plain rerun would start over beside the old last.pt: it says what to do instead.
    with pytest.raises(UserError) as err:
        run(cfg, tmp_path / "out2")
    assert str(err.value) == (
        f"run '{cfg.name}' in {metrics.parent} is interrupted at epoch 1 and left {last}: "
        f"continue it with resume=auto, or start it over with force=true")

    cfg.resume = "auto"
    resumed = run(cfg, tmp_path / "out3")
    wandb.teardown()
    assert resumed.status == "completed" and resumed.name == cfg.name
    first, continued = (read_run(find_run_files(tmp_path / d)[0]) for d in ("out1", "out3"))
    # The same W&B run, rewound to the checkpoint's step: no step is logged twice on sync.
    step = continued.config["_wandb"]["branch_point"]["step"]
    assert continued.run_id == first.run_id
    assert continued.config["_wandb"]["branch_point"]["run_id"] == first.run_id
    assert step <= stopped_at and min(h["_step"] for h in continued.history) > step

    # Two branches off one checkpoint are two W&B runs, each forked off the parent.
    best = tmp_path / "study" / "checkpoints" / cfg.name / "best.pt"
    for i, lr in enumerate(("1e-3", "5e-4")):
        branch = _config(tmp_path, "dataset.size=1500", "train.epochs=3", f"train.lr={lr}",
                         f"resume={best}", wandb_mode="offline")
        assert run(branch, tmp_path / f"fork{i}").status == "completed"
        wandb.teardown()
    forks = [read_run(find_run_files(tmp_path / f"fork{i}")[0]) for i in range(2)]
    assert len({first.run_id, forks[0].run_id, forks[1].run_id}) == 3
    assert [f.config["_wandb"]["branch_point"]["run_id"] for f in forks] == [first.run_id] * 2
    assert [f.name for f in forks] == [f"{cfg.name}+epochs3-lr1e-3", f"{cfg.name}+epochs3-lr5e-4"]


def test_force_restarts_an_interrupted_run_without_its_stale_last_checkpoint(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, "dataset.size=1500", "train.epochs=2")
    metrics = tmp_path / "study" / "runs" / cfg.name / "metrics.jsonl"
    _interrupt_when(metrics, '"epoch": 1')
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "out")
    last = tmp_path / "study" / "checkpoints" / cfg.name / "last.pt"
    assert last.exists()
    cfg.force = True
    result = run(cfg, tmp_path / "out")
    assert result.status == "completed" and result.epochs == 2 and not last.exists()


def _embeddings(path: Path, seed: int) -> None:
    np.save(path, np.random.default_rng(seed).normal(size=(400, 4)).astype(np.float32))


def test_a_changed_data_file_is_detected_and_another_of_the_same_stem_refused(
        tmp_path: Path) -> None:
    data = tmp_path / "vecs.npy"
    _embeddings(data, 0)
    args = ["dataset=embeddings", f"dataset.path={data}", "dataset.n_val=64",
            "dataset.n_test=64"]
    first = run(_config(tmp_path, *args, base=NO_DATA), tmp_path / "out")
    old = hashlib.sha256(data.read_bytes()).hexdigest()
    assert first.lineage[0]["data"] == {"sha256": old}
    split = next((tmp_path / "study" / "datasets" / "vecs").glob("split-*.json"))
    assert json.loads(split.read_text())["sha256"] == old

    _embeddings(data, 1)  # other rows, same shape, same name
    new = hashlib.sha256(data.read_bytes()).hexdigest()
    with pytest.raises(UserError) as err:  # not "skipped": it is not the data it was trained on
        run(_config(tmp_path, *args, base=NO_DATA), tmp_path / "out")
    assert str(err.value) == (
        f"dataset.path={data}: its content changed since run '{first.name}' in "
        f"{tmp_path / 'study' / 'runs' / first.name} was trained on it (sha256 {old[:12]} -> "
        f"{new[:12]}): retrain on the new content with force=true, or restore the file")
    best = tmp_path / "study" / "checkpoints" / first.name / "best.pt"
    with pytest.raises(UserError) as err:  # nor can its checkpoint go on with the new content
        run(_config(tmp_path, *args, "train.epochs=2", f"resume={best}", base=NO_DATA),
            tmp_path / "out")
    assert str(err.value) == (
        f"dataset.path={data}: its content changed since {best} was trained on it (sha256 "
        f"{old[:12]} -> {new[:12]}); resume needs the data it was trained on")
    with pytest.raises(UserError) as err:  # retraining meets the split made for the old content
        run(_config(tmp_path, *args, "force=true", base=NO_DATA), tmp_path / "out")
    assert str(err.value) == (
        f"dataset.path={data}: its content changed since {split} was made (sha256 {old[:12]} -> "
        f"{new[:12]}); restore the file, or move that split away to re-split it (runs on the "
        f"old content stay as they were)")

    other = tmp_path / "elsewhere" / "vecs.npy"
    other.parent.mkdir()
    _embeddings(other, 2)
    with pytest.raises(UserError, match=r"another file with the same stem \(.*vecs\.npy, sha256 "
                                        rf"{old[:12]}\) made {split}; rename this file"):
        run(_config(tmp_path, "dataset=embeddings", f"dataset.path={other}", "dataset.n_val=64",
                    "dataset.n_test=64", "name=other", base=NO_DATA), tmp_path / "out")


def test_a_file_is_hashed_once_per_size_mtime_inode_and_ctime(tmp_path: Path) -> None:
    data, cache = tmp_path / "vecs.npy", tmp_path / "cache"
    _embeddings(data, 0)
    digest = fingerprint.file_sha256(data, cache)
    assert digest == hashlib.sha256(data.read_bytes()).hexdigest()
    # A cache entry with this stat is trusted, in a new process too (no memo).
    stored = json.loads((cache / "sha256.json").read_text())
    stored[str(data.resolve())]["sha256"] = "cached"
    (cache / "sha256.json").write_text(json.dumps(stored))
    fingerprint._memo.clear()
    assert fingerprint.file_sha256(data, cache) == "cached"
    # A rewrite changes the mtime: hashed again.
    _embeddings(data, 1)
    os.utime(data, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert fingerprint.file_sha256(data, cache) == hashlib.sha256(data.read_bytes()).hexdigest()
    # The same size and the old mtime put back (cp -p, rsync -a): the ctime still moved.
    before = data.stat()
    _embeddings(data, 2)
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = data.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert fingerprint.file_sha256(data, cache) == hashlib.sha256(data.read_bytes()).hexdigest()
