"""Issue 12: every bad input is one line before work starts, and no fault loses finished work.

Config mistakes are checked in-process (compose + load_config, as the CLI does); cases about
processes use real subprocesses, real signals and, for a full disk, a real small filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudy.build import build
from flowstudy.checkpoint import FORMAT_VERSION, Checkpoint, CheckpointError
from flowstudy.config import rules_text
from flowstudy.data import build_data
from flowstudy.data.files import load_vectors
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.devices import resolve_device
from flowstudy.errors import ConfigError, UserError, describe
from flowstudy.fileio import _HOST, run_lock
from flowstudy.lineage import segment
from flowstudy.report import load_runs
from flowstudy.results import RunResult
from flowstudy.run import run
from flowstudy.tracking import Tracker, check_online

from .helpers import TINY, cli, compose_config, name_of

NAME = name_of(TINY)


def _error(overrides: list[str]) -> str:
    """The one line the CLI prints for these overrides (composition and validation)."""
    with pytest.raises(Exception) as info:
        compose_config(overrides)
    message = describe(info.value)
    assert message is not None, f"no one-line description for {info.value!r}"
    return message


# --- config values: each field's rule, declared beside the field ----------------------------------

NAME_RULE = ("a run name of letters, digits and . _ - + = , starting with a letter or digit (at "
             "most 128 characters), or null to derive it")


@pytest.mark.parametrize(("override", "expected"), [
    # issue 12, item 10: non-finite floats, seeds, names, W&B settings
    ("train.lr=inf", "train.lr=inf is not allowed: a float > 0"),
    ("train.weight_decay=inf", "train.weight_decay=inf is not allowed: a float >= 0"),
    ("train.min_delta=inf", "train.min_delta=inf is not allowed: a float >= 0"),
    ("train.grad_clip=inf", "train.grad_clip=inf is not allowed: a float > 0"),
    ("train.lr=nan", "train.lr=nan is not allowed: a float > 0"),
    ("dataset.noise=inf",
     "dataset.noise=inf is not allowed: a float >= 0, or null for the dataset's default"),
    ("seed=-1", "seed=-1 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("seed=4294967295",
     "seed=4294967295 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("dataset.seed=-5",
     "dataset.seed=-5 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("name=.", f"name='.' is not allowed: {NAME_RULE}"),
    ("name=..", f"name='..' is not allowed: {NAME_RULE}"),
    ("name=", f"name='' is not allowed: {NAME_RULE}"),
    ("name=a/b", f"name='a/b' is not allowed: {NAME_RULE}"),
    ("name=my run", f"name='my run' is not allowed: {NAME_RULE}"),
    ("wandb.tags=[" + "t" * 65 + "]", "wandb.tags=['" + "t" * 65 + "'] is not allowed: a list of "
     "tags of 1 to 64 characters each"),
    ("wandb.project=me/proj",
     "wandb.project='me/proj' is not allowed: at most 128 characters, none of / \\ # ? % :"),
    # issue 12, item 10: sizes evaluation could not handle
    ("sample.n=1000000", "sample.n=1000000 is not allowed: an integer from 4 to 10000 (W2 is an "
     "exact n x n assignment), or null for the test split's size"),
    ("dataset=sphere;dataset.dim=50000", "dataset.dim=50000 is not allowed: an integer from 1 to "
     "8192 (the Frechet distance's D x D matrices)"),
    # further likely mistakes
    ("arch=DiT", "arch=DiT is not an option; available: dit, mlp, unet"),
    ("ablation=architecture", "ablation=architecture is not an option; available: "
     "architectures, architectures-isoflop, augmentations, dataset-size, flow-methods, none"),
    ("train.batch_size=0", "train.batch_size=0 is not allowed: an integer >= 1, or null for "
     "256, or the train split where smaller"),
    ("sample.steps=0", "sample.steps=0 is not allowed: an integer >= 1"),
    ("train.patience=-3", "train.patience=-3 is not allowed: an integer >= 1"),
    ("dataset.normalize=none",
     "dataset.normalize='none' is not allowed: one of standard, robust, global"),
    ("train.epochs=1e3",
     "train.epochs: Value '1000.0' of type 'float' could not be converted to Integer"),
    ("train.lr=1e-3,2e-3", "train.lr=1e-3,2e-3: a comma means a sweep; add -m to run one job "
     "per value, or write a list as key=[a,b]"),
    ("dataset=embeddings", "dataset.path has no default and must be set: add dataset.path=..."),
    ("train.device=gpu", "train.device='gpu' is not allowed: auto, cpu, cuda or cuda:N"),
    ("sample.solver=Euler",
     "sample.solver='Euler' is not allowed: one of euler, midpoint, rk4, dopri5"),
    ("hydra/launcher=nosuch", "hydra/launcher=nosuch is not an option; available: basic, "
     "joblib, submitit_local, submitit_slurm"),
    ("dataset.n_test=2", "dataset.n_test=2 is not allowed: an integer >= 4 (k-NN "
     "precision/recall), or null for a tenth of the rows (100 to 2,000)"),
    ("arch=unet;arch.mults=[]",
     "arch.mults=[] is not allowed: a non-empty list of integers >= 1, or null to fit the data "
     "dim"),
])
def test_a_bad_value_is_one_line_naming_key_value_and_rule(override: str, expected: str) -> None:
    assert _error(override.split(";")) == expected


def test_help_lists_the_rule_of_every_key() -> None:
    text = rules_text()
    assert re.search(r"^train\.lr +a float > 0$", text, re.MULTILINE)
    assert re.search(r"^seed +an integer from 0 to 4294967294 \(numpy's seed range\)$", text,
                     re.MULTILINE)
    assert "arch.mults" in text and "wandb.tags" in text and "sample.n" in text


def test_devices_this_machine_lacks_are_refused() -> None:
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=rf"train\.device='cuda:{count}' is not allowed"):
            resolve_device(f"cuda:{count}")
    else:
        with pytest.raises(ConfigError) as info:
            resolve_device("cuda")
        assert str(info.value) == ("train.device='cuda' is not allowed: cpu or auto (this "
                                   "machine has no CUDA device)")


def test_fp16_on_a_cpu_is_refused_before_training() -> None:
    cfg = compose_config([*TINY, "train.precision=fp16"])
    with pytest.raises(ConfigError) as info:
        build(cfg, torch.device("cpu"))
    assert str(info.value) == ("train.precision='fp16' is not allowed: fp32 or bf16 on a CPU "
                               "(fp16 needs CUDA)")


def test_wandb_online_without_an_api_key_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # an empty one: no key
    (tmp_path / "netrc").write_text("")
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        check_online(compose_config(["wandb.mode=online"]).wandb)
    assert str(info.value) == ("wandb.mode='online' is not allowed: offline or disabled here: no "
                               "W&B API key for api.wandb.ai (run `wandb login` or set "
                               "WANDB_API_KEY)")
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password x\n")
    check_online(compose_config(["wandb.mode=online"]).wandb)


# --- data files -----------------------------------------------------------------------------------


def _data_error(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UserError) as info:
        load_vectors(str(path))
    return str(info.value).removeprefix(f"dataset.path={path}: ")


def test_data_files_that_cannot_be_trained_on_are_one_line(tmp_path: Path) -> None:
    assert _data_error(tmp_path, "big.npy", np.array([[1e300, 0.0], [0.0, 1.0]])) == \
        "1 rows hold values too large for float32 (|x| > 3.4e38; first: row 0)"
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    assert _data_error(tmp_path, "loop.pt", None) == "is a symbolic link loop"
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "nowhere.pt")
    assert _data_error(tmp_path, "dangling.pt", None) == "no such file"
    (tmp_path / "dir.pt").mkdir()
    assert _data_error(tmp_path, "dir.pt", None) == \
        "is a directory; give the .pt or .npy file inside it"
    (tmp_path / "vectors.csv").write_text("1,2\n3,4\n")
    assert _data_error(tmp_path, "vectors.csv", None) == \
        "unsupported file type '.csv'; use .pt or .npy"
    assert _data_error(tmp_path, "dict.pt", {"embeddings": torch.zeros(3, 2)}) == \
        ("holds a dict with keys embeddings, expected one tensor [N, D] (save the tensor "
         "itself: torch.save(tensor, path))")
    assert _data_error(tmp_path, "object.npy", np.array([[1, "a"]], dtype=object)).startswith(
        "not a readable .npy file (Object arrays cannot be loaded when allow_pickle=False")
    assert _data_error(tmp_path, "nan.npy", np.array([[0.0, 1.0], [np.nan, 1.0]])) == \
        "1 rows hold NaN or Inf (first: row 1)"


def test_sparse_float16_and_integer_files_load_as_dense_float32(tmp_path: Path) -> None:
    dense = torch.tensor([[0.0, 1.5], [2.0, 0.0], [0.0, 0.0]])
    torch.save(dense.to_sparse(), tmp_path / "sparse.pt")
    np.save(tmp_path / "half.npy", dense.numpy().astype(np.float16))
    np.save(tmp_path / "int.npy", np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert torch.equal(load_vectors(str(tmp_path / "sparse.pt")), dense)
    assert torch.equal(load_vectors(str(tmp_path / "half.npy")), dense)
    assert load_vectors(str(tmp_path / "int.npy")).dtype == torch.float32


def _embeddings(tmp_path: Path, rows: int, dim: int, *overrides: str):
    path = tmp_path / "vectors.npy"
    np.save(path, np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))
    return compose_config(["dataset=embeddings", f"dataset.path={path}", *overrides]).dataset


def test_too_few_training_rows_are_refused_before_training(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 11, 2, "dataset.n_val=4", "dataset.n_test=4")
    with pytest.raises(ConfigError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == ("dataset.n_val=4 is not allowed: a split leaving at least 4 "
                               "training points (here 3); evaluation's k-NN precision/recall "
                               "needs them")


def test_vectors_too_wide_to_evaluate_are_refused_before_training(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 12, 50_000, "dataset.n_val=4", "dataset.n_test=4")
    with pytest.raises(UserError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value) == (f"dataset.path={cfg.path}: 50000-d vectors; evaluation handles at "
                               f"most 8192 dims (the Frechet distance needs D x D float64 "
                               f"matrices: 19 GiB each here)")


# --- damaged files --------------------------------------------------------------------------------


def test_a_damaged_split_file_is_named(tmp_path: Path) -> None:
    cfg = _embeddings(tmp_path, 40, 2, "dataset.n_val=8", "dataset.n_test=8")
    build_data(cfg, tmp_path / "study")
    split = next((tmp_path / "study" / "datasets").rglob("split-*.json"))
    split.write_text('{"rows": 40, "train": [1, 2')
    with pytest.raises(UserError) as info:
        build_data(cfg, tmp_path / "study")
    assert str(info.value).startswith(f"{split}: not a readable split file (")
    assert str(info.value).endswith("); move it away to re-split")
    split.write_text('{"rows": 40}')
    with pytest.raises(UserError, match=r"not a split file \(needs rows, train, val and test\)"):
        build_data(cfg, tmp_path / "study")


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


def test_the_report_skips_a_damaged_result_with_a_warning(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    good = RunResult(name="good", group="g", groups=["g"], status="completed")
    good.save(tmp_path / "runs" / "good" / "result.json")
    bad = tmp_path / "runs" / "bad" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "bad", "sta')
    other = tmp_path / "runs" / "other" / "result.json"
    other.parent.mkdir(parents=True)
    other.write_text('[1, 2]')
    assert [r.name for r in load_runs(tmp_path)] == ["good"]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"flowstudy.report: warning: skipping {bad}: not a readable "
                             f"result.json (")
    assert err[0].endswith("); move it away, or replace the run with force=true")
    assert err[1].startswith(f"flowstudy.report: warning: skipping {other}: not a flowstudy "
                             f"result (")


# --- files left by killed writers and other processes ---------------------------------------------


def test_a_killed_saves_temporary_file_is_removed_by_the_next_save(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    orphan = tmp_path / f".best.pt.{_HOST}.{dead.stdout.strip()}.abc123.tmp"
    orphan.write_bytes(b"\0" * 1000)
    mine = tmp_path / f".best.pt.{_HOST}.{os.getpid()}.zzz.tmp"  # a live writer's: kept
    mine.write_bytes(b"")
    Checkpoint({"epoch": 1}, {}, {}).save(tmp_path / "best.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best.pt", mine.name])


def test_a_study_dir_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'file' / 'study'}"])
    with pytest.raises(UserError) as info:
        run(cfg, tmp_path / "out")
    assert str(info.value) == (f"study_dir: {tmp_path}/file/study/checkpoints/{NAME} is not a "
                               f"writable directory (Not a directory)")


def test_same_name_runs_with_different_checkpoint_dirs_do_not_run_at_once(tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                          f"checkpoint.dir={tmp_path / 'other'}"])
    run_dir = tmp_path / "study" / "runs" / NAME
    run_dir.mkdir(parents=True)
    with run_lock(run_dir / ".lock", "a run holding study/runs/<name>"), \
            pytest.raises(UserError, match=rf"run '{NAME}' is already running"):
        run(cfg, tmp_path / "out")
    assert not (run_dir / "result.json").exists()


# --- a failure after training keeps the training -------------------------------------------------


def test_an_evaluation_failure_keeps_the_trained_run_and_the_rerun_only_evaluates(
        tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled"])
    ckpt_dir = tmp_path / "study" / "checkpoints" / NAME
    (ckpt_dir / "samples.png").mkdir(parents=True)  # the picture cannot be written
    with pytest.raises(IsADirectoryError):
        run(cfg, tmp_path / "out")
    result_path = tmp_path / "study" / "runs" / NAME / "result.json"
    failed = RunResult.load(result_path)
    assert failed.status == "trained" and failed.error.startswith("IsADirectoryError")
    assert failed.epochs == 3 and failed.best_val_loss is not None
    best = (ckpt_dir / "best.pt").read_bytes()
    metrics = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()

    (ckpt_dir / "samples.png").rmdir()
    done = run(cfg, tmp_path / "out")
    assert done.status == "completed" and done.error is None and not done.skipped
    assert (done.epochs, done.best_val_loss) == (failed.epochs, failed.best_val_loss)
    assert (ckpt_dir / "best.pt").read_bytes() == best  # not retrained
    after = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()
    assert after.startswith(metrics) and after.count('"train/loss"') == metrics.count(
        '"train/loss"')
    assert '"sample/w2"' in after and RunResult.load(result_path).status == "completed"


# --- a real small filesystem ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path, *growing: str) -> None:
    """Fill the filesystem of ``directory``, and the last page of each ``growing`` file."""
    for name, chunk in [("filler", 65536), *((g, 1) for g in growing)]:
        with contextlib.suppress(OSError), open(directory / name, "ab", buffering=0) as f:
            while True:
                f.write(b" " * chunk)


def test_disk_full_on_a_real_filesystem_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as small:
        path = small / "best.pt"
        Checkpoint({"epoch": 1, "w": torch.ones(100_000)}, {}, {}).save(path)  # 400 kB
        before = path.read_bytes()
        with pytest.raises(CheckpointError) as info:
            Checkpoint({"epoch": 2, "w": torch.zeros(200_000)}, {}, {}).save(path)  # no room
        assert str(info.value) == (f"could not write {path} (No space left on device); the "
                                   f"previous best.pt, if any, is intact")
        assert path.read_bytes() == before
        assert [p.name for p in small.iterdir()] == ["best.pt"]


def test_a_run_whose_checkpoints_do_not_fit_fails_in_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "16k") as small:
        cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                              f"checkpoint.dir={small}"])
        with pytest.raises(CheckpointError) as info:
            run(cfg, tmp_path / "out")
        assert str(info.value) == (f"could not write {small / NAME / 'best.pt'} (No space left "
                                   f"on device); the previous best.pt, if any, is intact")
        result = RunResult.load(tmp_path / "study" / "runs" / NAME / "result.json")
        assert result.status == "failed" and "No space left on device" in result.error
        assert not [p for p in (small / NAME).iterdir() if p.suffix == ".tmp"]


def test_a_full_metrics_directory_warns_once_and_training_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_config([*TINY, "wandb.mode=disabled"])
    with tmpfs(tmp_path / "small", "64k") as small:
        lineage = [segment(cfg, data_fingerprint(cfg.dataset, tmp_path), None)]
        tracker = Tracker(cfg, tmp_path / "out", small / "metrics.jsonl", lineage)
        with tracker:
            tracker.log({"train/loss": 1.0}, 1)
            _fill(small, "metrics.jsonl")
            for step in range(2, 200):
                tracker.log({"train/loss": 1.0, "pad": "x" * 200}, step)
        lines = (small / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 1, "train/loss": 1.0}
    warnings = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"could not write {small / 'metrics.jsonl'} (No space left on "
                                  f"device); metrics go to W&B only from step ")


# --- the command line, in real processes ----------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["train.lr=(1"], "'train.lr=(1' is not a valid override (extraneous input '('); quote a "
     "value holding spaces, brackets or commas, e.g. 'name=\"a b\"'"),
    (["train.lr=1", "2"], "'2' is not an override (key=value); quote a value holding spaces, "
     "brackets or commas, e.g. 'name=\"a b\"'"),
    (["hydra.run.dir=afile"], "afile: File exists; hydra.run.dir (hydra.sweep.dir with -m) must "
     "be a directory that can be created and written"),
])
def test_command_line_mistakes_are_one_line_with_exit_2(tmp_path: Path, args: list[str],
                                                        expected: str) -> None:
    (tmp_path / "afile").write_text("")
    proc = cli([f"study_dir={tmp_path / 'study'}", *args], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"flowstudy: error: {expected}")
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_a_bad_value_in_a_sweep_grid_stops_the_sweep_before_any_job(tmp_path: Path,
                                                                    study: list[str]) -> None:
    proc = cli(["-m", *study, f"hydra.sweep.dir={tmp_path / 'multi'}", *TINY,
                "train.grad_clip=1.0,inf"], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        2, "flowstudy: error: train.grad_clip=inf is not allowed: a float > 0")
    assert not (tmp_path / "study").exists()


def _start(args: list[str], cwd: Path, code: str = "") -> subprocess.Popen[str]:
    """The CLI in a process of its own; ``code`` runs first (e.g. to slow a step down)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    script = textwrap.dedent(code) + "\nimport sys\nfrom flowstudy.cli import main\n" \
        f"sys.argv = ['flowstudy.train', *{args!r}]\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited before {text!r} appeared: {proc.communicate()}")
        time.sleep(0.02)
    raise TimeoutError(f"{text!r} never appeared in {path}")


@pytest.mark.slow
def test_sighup_while_building_the_data_says_so_and_leaves_interrupted(tmp_path: Path,
                                                                       study: list[str]) -> None:
    # A data source as slow as a network filesystem: the signal lands while it is read.
    slow = """
        import time, flowstudy.build as b
        real = b.build_data
        def build_data(*a, **k):
            time.sleep(60)
            return real(*a, **k)
        b.build_data = build_data
    """
    proc = _start([*TINY, *study, "wandb.mode=disabled"], tmp_path, slow)
    result = tmp_path / "study" / "runs" / NAME / "result.json"
    _wait_for(result, '"status": "running"', proc)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP
    assert stderr.strip().splitlines()[-3:-1] == [
        "flowstudy: stopped by SIGHUP while building the data and model", "continue with:"]
    saved = RunResult.load(result)
    assert saved.status == "interrupted" and "while building the data" in saved.error


@pytest.mark.slow
def test_sigterm_during_final_evaluation_keeps_training_and_the_rerun_only_evaluates(
        tmp_path: Path, study: list[str]) -> None:
    args = [*TINY, *study, "wandb.mode=offline", "sample.steps=1500"]  # a long evaluation
    name = name_of(args)
    proc = _start(args, tmp_path)
    result = tmp_path / "study" / "runs" / name / "result.json"
    _wait_for(result, '"status": "trained"', proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    lines = stderr.strip().splitlines()
    assert lines[-3] == ("flowstudy: stopped by SIGTERM while evaluating best.pt (training had "
                         "finished; rerun the same command to evaluate it without retraining)")
    assert lines[-2] == "continue with:"
    saved = RunResult.load(result)
    assert saved.status == "trained" and saved.epochs == 3 and saved.best_val_loss is not None
    best = (tmp_path / "study" / "checkpoints" / name / "best.pt").read_bytes()

    rerun = cli([*args, "resume=auto"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{name}: training finished earlier; evaluating" in rerun.stderr + rerun.stdout
    done = RunResult.load(result)
    assert done.status == "completed" and done.metrics["w2"] > 0
    assert (done.epochs, done.best_val_loss) == (saved.epochs, saved.best_val_loss)
    assert (tmp_path / "study" / "checkpoints" / name / "best.pt").read_bytes() == best


@pytest.mark.slow
def test_a_full_log_directory_warns_once_and_the_run_completes(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "logs", "256k") as logs:
        proc = _start([*TINY, "train.epochs=6", f"study_dir={tmp_path / 'study'}",
                       f"hydra.run.dir={logs}", "wandb.mode=disabled"], tmp_path)
        _wait_for(logs / "train.log", "epoch 1/6", proc)
        _fill(logs, "train.log")
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Logging error" not in stderr and "Traceback" not in stderr
    assert stderr.count(f"flowstudy: warning: could not write the log file {logs}/train.log "
                        f"([Errno 28] No space left on device); logging to the console "
                        f"only") == 1
    name = name_of([*TINY, "train.epochs=6"])
    assert RunResult.load(tmp_path / "study" / "runs" / name / "result.json").status == \
        "completed"


@pytest.mark.slow
def test_a_second_sweep_reports_a_run_another_process_trains_as_busy(tmp_path: Path) -> None:
    study = tmp_path / "study"
    first = _start([*TINY, "train.epochs=200", f"study_dir={study}",
                    f"hydra.run.dir={tmp_path / 'o1'}", "wandb.mode=disabled"], tmp_path)
    try:
        _wait_for(study / "runs" / name_of([*TINY, "train.epochs=200"]) / "metrics.jsonl",
                  '"step"', first)
        # job 0 is the run the first process trains; job 1 a short one of its own
        second = cli(["-m", *TINY, f"study_dir={study}", f"hydra.sweep.dir={tmp_path / 'm'}",
                      "wandb.mode=disabled", "train.epochs=200,2"], cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert second.returncode == 75, second.stderr
    job0 = json.loads((tmp_path / "m" / "0" / "job.json").read_text())
    assert job0["status"] == "running elsewhere"
    assert "1 of 2 runs completed or skipped as done; 1 being trained by another process" in \
        second.stdout
    assert second.stderr.strip().splitlines()[-1] == (
        "flowstudy: 1 runs are being trained by another process; rerun this sweep once it has "
        "finished")
