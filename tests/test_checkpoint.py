from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest
import torch

from flowstudy import checkpoint as checkpoint_module
from flowstudy.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    check_compatible,
)
from flowstudy.config import to_dict
from flowstudy.run import run

from .helpers import TINY, compose_config


def test_round_trip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "best.pt"
    train = {"model": {"w": torch.arange(4.0)}, "ema": {"module": {}, "updates": 0},
             "optimizer": {}, "early_stopping": {}, "generators": {}, "epoch": 3, "step": 12,
             "batch": 0, "window": {}, "nonfinite": {}}
    saved = Checkpoint(train, {"python": (3, (1, 2), None)}, {"name": "r"}, lineage=[],
                       resolved={"n_train": 8}, wandb_run_id="abc")
    saved.save(path)
    assert torch.load(path, weights_only=True)["format_version"] == FORMAT_VERSION
    loaded = Checkpoint.load(path)
    assert loaded.epoch == 3 and loaded.step == 12 and loaded.config == {"name": "r"}
    assert loaded.resolved == {"n_train": 8} and loaded.wandb_run_id == "abc"
    assert loaded.rng == {"python": (3, (1, 2), None)}
    assert torch.equal(loaded.train["model"]["w"], torch.arange(4.0))
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    Checkpoint({"epoch": 1}, {}, {}).save(path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails part-way through
        Checkpoint({"epoch": 2, "bad": lambda: None}, {}, {}).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


@pytest.mark.parametrize("case", ["missing", "directory", "truncated", "cut_at_end", "empty",
                                  "garbage", "not_dict", "newer"])
def test_bad_checkpoint_files_are_explained(tmp_path: Path, case: str) -> None:
    path = tmp_path / "best.pt"
    good = tmp_path / "good.pt"
    Checkpoint({"model": {"w": torch.randn(1000)}, "epoch": 1}, {}, {}).save(good)
    expected = {
        "missing": "no such file", "directory": "is a directory",
        "truncated": "not a readable checkpoint (the file is cut short: 2000 bytes, its zip "
                     "archive lacks its end, as an interrupted copy or a full disk leaves it)",
        "cut_at_end": "not a readable checkpoint (the file is cut short: ",
        "empty": "not a readable checkpoint (the file is empty)",
        "garbage": "not a readable checkpoint (not a torch checkpoint: torch.save writes a zip "
                   "archive, and this is not one)",
        "not_dict": "not a flowstudy checkpoint",
        "newer": "is newer than this flowstudy reads",
    }[case]
    if case == "directory":
        path.mkdir()
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:2000])
    elif case == "cut_at_end":  # torch itself says "negative seek value" here
        path.write_bytes(good.read_bytes()[:-10])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_text("this is not a checkpoint\n")
    elif case == "not_dict":
        torch.save(torch.zeros(3), path)
    elif case == "newer":
        torch.save({"format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError) as info:
        Checkpoint.load(path)
    assert str(info.value).startswith(f"resume={path}: ") and expected in str(info.value)
    assert "\n" not in str(info.value)


def test_compatibility_names_the_differing_keys() -> None:
    saved = to_dict(compose_config(["arch.width=64"]))
    check_compatible("x.pt", saved, to_dict(compose_config(["arch.width=64", "train.lr=1e-4"])))
    with pytest.raises(CheckpointError) as info:
        check_compatible("x.pt", saved, to_dict(compose_config(["arch.width=32"])))
    assert "arch.width=64 (now: 32)" in str(info.value)


def test_the_hash_is_of_the_bytes_read_even_if_the_file_is_replaced_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # flowstudy.sample while the run trains: best.pt is replaced mid-read
    train = {k: {} for k in ("model", "ema", "optimizer", "early_stopping", "generators",
                             "window", "nonfinite")}
    path = tmp_path / "best.pt"
    Checkpoint({**train, "epoch": 5, "step": 40, "batch": 0}, {}, {}).save(path)
    epoch5 = hashlib.sha256(path.read_bytes()).hexdigest()
    real_load = torch.load

    def load_then_replace(*args, **kwargs):
        content = real_load(*args, **kwargs)
        Checkpoint({**train, "epoch": 40, "step": 320, "batch": 0}, {}, {}).save(path)
        return content

    monkeypatch.setattr(torch, "load", load_then_replace)
    loaded = Checkpoint.load(path)
    assert loaded.epoch == 5 and loaded.sha256 == epoch5
    assert hashlib.sha256(path.read_bytes()).hexdigest() != epoch5  # the file did change


# A checkpoint whose header has the wrong types is one line, never a TypeError.
def _header_only(path: Path, **changes: object) -> Path:
    from flowstudy.checkpoint import TRAIN_KEYS

    content = {"format_version": FORMAT_VERSION, "rng": {}, **{k: {} for k in TRAIN_KEYS},
               "config": to_dict(compose_config([])), **changes}
    torch.save(content, path)
    return path


@pytest.mark.parametrize(("changes", "expected"), [
    ({"format_version": "1"}, "damaged checkpoint, its format_version is '1', expected an "
                              "integer"),
    ({"config": "junk"}, "damaged checkpoint, its config is a str, expected the run's config "
                         "(a mapping)"),
])
def test_a_checkpoint_header_of_the_wrong_type_is_one_line(tmp_path: Path, changes: dict,
                                                           expected: str) -> None:
    path = _header_only(tmp_path / "best.pt", **changes)
    with pytest.raises(CheckpointError) as info:
        Checkpoint.load(path)
    assert str(info.value) == f"resume={path}: {expected}"


@pytest.mark.parametrize("arch", ["drop", "mlp", {"name": "transformer"}])
def test_a_checkpoint_config_without_a_valid_arch_is_one_line(tmp_path: Path, arch) -> None:
    import flowstudy

    config = to_dict(compose_config([]))
    if arch == "drop":
        del config["arch"]
    else:
        config["arch"] = arch
    path = _header_only(tmp_path / "best.pt", config=config,
                        normalizer={"shift": torch.zeros(2), "scale": torch.ones(2)})
    expected = (f"resume={path}: damaged checkpoint, its config lacks a valid arch (each a "
                f"mapping naming one of its options)")
    loaded = Checkpoint.load(path)  # the header reads; what reads its config refuses it
    with pytest.raises(CheckpointError) as info:
        check_compatible(path, loaded.config, to_dict(compose_config([])))
    assert str(info.value) == expected
    with pytest.raises(CheckpointError) as info:
        flowstudy.load(path)
    assert str(info.value) == expected


def test_a_checkpoint_missing_keys_is_named(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    torch.save({"format_version": FORMAT_VERSION, "model": {}, "epoch": 3}, path)
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                          f"resume={path}"])
    with pytest.raises(CheckpointError) as info:
        run(cfg, tmp_path / "out")
    assert str(info.value) == (f"resume={path}: damaged checkpoint, it lacks config, ema, "
                               f"optimizer, early_stopping, generators, step, batch, window, "
                               f"nonfinite, rng")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    path = tmp_path / "best.pt"
    Checkpoint({"epoch": 1, "w": torch.ones(10)}, {}, {}).save(path)
    before = path.read_bytes()

    def full_disk(obj: object, f: io.BufferedWriter) -> None:
        f.write(b"partial checkpoint bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*previous best\.pt"):
        Checkpoint({"epoch": 2, "w": torch.zeros(10)}, {}, {}).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
