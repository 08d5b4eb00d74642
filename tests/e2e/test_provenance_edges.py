"""The edges of provenance, sweeps and the documented commands, as a user meets them:
real subprocesses on real files. Each test names its case of the issue."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY, TINY_MLP, TINY_TRAIN, cli

pytestmark = pytest.mark.slow

QUICK = [*TINY, "train.epochs=1", "wandb.mode=disabled", "train.threads=1"]


def _error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("flowstudy: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0].removeprefix("flowstudy: error: ")


# --- keys added with + or deleted with ~ -------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (["+lr=0.5"], "lr=0.5 is not a known key; allowed at the top level: arch, flow, dataset,"),
    (["+train.lrr=0.5"], "train.lrr=0.5 is not a known key; allowed in train: epochs,"),
    (["+trian.lr=0.5"], "trian.lr=0.5 is not a known key; allowed at the top level: arch,"),
    (["++foo=1"], "foo=1 is not a known key; allowed at the top level:"),
    (["~train"], "~train: train is part of the config and cannot be deleted; set its keys instead"),
    (["-m", "+train.lrr=0.5,1"], "train.lrr=0.5 is not a known key; allowed in train:"),
])
def test_unknown_keys_are_refused_whichever_prefix(tmp_path: Path, args: list[str],
                                                   expected: str) -> None:
    deleting = args[0].startswith("~")  # a deleted section takes no keys after it
    proc = cli([*args, *(["wandb.mode=disabled"] if deleting else QUICK)], tmp_path, timeout=120)
    assert _error_line(proc).startswith(expected)
    assert not (tmp_path / "study").exists()


def test_sample_refuses_unknown_keys(tmp_path: Path) -> None:
    proc = cli(["resume=x.pt", "+sample.stepz=4"], tmp_path, timeout=120,
               module="flowstudy.sample")
    assert _error_line(proc).startswith("sample.stepz=4 is not a known key; allowed in sample:")


# --- cases 2 and 11: a run refused before training leaves the disk as it found it --------------

EMB = [*TINY_MLP, *TINY_TRAIN, "train.epochs=1", "wandb.mode=disabled", "train.threads=1",
       "dataset=embeddings", "dataset.path=cd.npy"]


def _vectors(path: Path, seed: int = 0, rows: int = 400) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)
    np.save(path, x)
    return x


CD = "mlp-ot-cd-none-batch_size64-depth2-epochs1-steps8-warmup_steps10-width32"


def _result(tmp_path: Path, name: str = CD) -> Path:
    return tmp_path / "study" / "runs" / name / "result.json"


def test_force_after_a_data_change_keeps_the_completed_record(tmp_path: Path) -> None:
    x = _vectors(tmp_path / "cd.npy")
    assert cli(EMB, tmp_path, timeout=120).returncode == 0
    result = _result(tmp_path)
    before = result.read_bytes()
    assert json.loads(before)["status"] == "completed"
    x[0, 0] += 1.0
    np.save(tmp_path / "cd.npy", x)
    line = _error_line(cli([*EMB, "force=true"], tmp_path, timeout=120))
    assert line.startswith("dataset.path=cd.npy: its content changed since ")
    assert "runs on the old content stay as they were" in line
    assert result.read_bytes() == before  # still completed, its epochs and metrics kept
    assert (result.parent.parent.parent / "checkpoints" / result.parent.name / "best.pt").exists()


def test_a_rejected_data_file_does_not_poison_its_name(tmp_path: Path) -> None:
    x = _vectors(tmp_path / "cd.npy")
    bad = x.copy()
    bad[3, 1] = np.nan
    np.save(tmp_path / "cd.npy", bad)
    line = _error_line(cli(EMB, tmp_path, timeout=120))
    assert line.startswith("dataset.path=cd.npy: ") and "NaN" in line
    assert not _result(tmp_path).exists()  # no failed record claiming the bad file's hash
    np.save(tmp_path / "cd.npy", x)  # fixed
    proc = cli(EMB, tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(_result(tmp_path).read_text())["status"] == "completed"


# --- extending a finished run keeps its parent's best as the best to beat ---------

def test_a_branch_that_never_beats_its_parent_evaluates_the_parents_best(tmp_path: Path) -> None:
    base = [*QUICK, "train.epochs=2"]
    assert cli(base, tmp_path, timeout=120).returncode == 0
    [parent] = (tmp_path / "study" / "checkpoints").iterdir()
    # min_delta so large that no epoch of the branch can improve on its parent's best
    proc = cli([*base, f"resume=study/checkpoints/{parent.name}/best.pt", "train.epochs=3",
                "train.min_delta=1e9"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "is its parent's best" in proc.stdout and "the best to beat" in proc.stdout
    branch = json.loads(next((tmp_path / "study" / "runs").glob("*+*/result.json")).read_text())
    assert branch["status"] == "completed" and branch["best_epoch"] == 2
    assert branch["metrics"]  # evaluated: the parent's best weights, under the branch's name
    assert Path(tmp_path / branch["checkpoint"]).exists()


# --- a torn last line of metrics.jsonl -------------------------------------------

def test_resume_tolerates_and_repairs_a_torn_last_metrics_line(tmp_path: Path) -> None:
    base = [*QUICK, "checkpoint.save_last=true"]
    assert cli(base, tmp_path, timeout=120).returncode == 0
    [parent] = (tmp_path / "study" / "runs").iterdir()
    metrics = parent / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 99, "train/lo')  # what kill -9 mid-write leaves
    proc = cli([*base, f"resume=study/checkpoints/{parent.name}/last.pt", "train.epochs=2"],
               tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "its last line is incomplete" in proc.stdout + proc.stderr
    branch = next((tmp_path / "study" / "runs").glob("*+*"))
    records = [json.loads(line) for line in (branch / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == json.loads(whole.splitlines()[0])  # the parent's history, then its own
    assert json.loads((branch / "result.json").read_text())["status"] == "completed"


# --- every command's Hydra directory is its own -------------------------------------

def test_two_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    procs = [subprocess.Popen([sys.executable, "-m", "flowstudy.train", *QUICK, f"seed={seed}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    dirs = sorted(p.parent.parent for p in tmp_path.glob("outputs/*/*/.hydra/overrides.yaml"))
    assert len(dirs) == 2
    assert {("seed=1" in (d / ".hydra" / "overrides.yaml").read_text()) for d in dirs} == {
        True, False}
    for pid_dir, proc in zip(sorted(dirs, key=lambda d: int(d.name.rsplit("-", 1)[1])),
                             sorted(procs, key=lambda p: p.pid), strict=True):
        assert pid_dir.name.endswith(f"-{proc.pid}")


def test_a_sweeps_directory_names_its_process(tmp_path: Path) -> None:
    proc = cli(["--cfg", "hydra", "--resolve"], tmp_path, timeout=60)
    sweep_dir = next(line for line in proc.stdout.splitlines() if "multirun/" in line)
    assert re.search(r"outputs/multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d+$", sweep_dir)


# --- the command printed after Ctrl-C in a sweep continues the whole sweep -----------

def test_the_printed_resume_command_continues_the_whole_sweep(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    grid = ["-m", *QUICK, "train.epochs=40", "train.patience=100", "seed=1,2"]
    proc = subprocess.Popen([sys.executable, "-m", "flowstudy.train", *grid], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("study/checkpoints/*seed1*/best.pt")):  # job 0 is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("python -m flowstudy.train -m ") and command.endswith("resume=auto")
    again = cli(shlex.split(command)[3:], tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 runs completed or skipped as done" in again.stdout
    assert "raised" not in again.stdout + again.stderr
    results = [json.loads(p.read_text()) for p in tmp_path.glob("study/runs/*/result.json")]
    assert sorted(r["status"] for r in results) == ["completed", "completed"]
    assert {r["epochs"] for r in results} == {40}


# --- flowstudy.sample -m checks its whole grid first ----------------------------------

def test_a_sample_sweep_checks_every_job_before_the_first(tmp_path: Path) -> None:
    assert cli(QUICK, tmp_path, timeout=120).returncode == 0
    [best] = tmp_path.glob("study/checkpoints/*/best.pt")
    resume = f"resume={best.relative_to(tmp_path)}"
    proc = cli(["-m", resume, "sample.steps=2,0,4"], tmp_path, timeout=120,
               module="flowstudy.sample")
    assert _error_line(proc) == "sample.steps=0 is not allowed: an integer >= 1"
    assert not (best.parent / "eval").exists()  # not even steps=2 ran
    proc = cli(["-m", resume, "sample.steps=2,4"], tmp_path, timeout=120,
               module="flowstudy.sample")
    assert proc.returncode == 0, proc.stderr
    assert len(list((best.parent / "eval").glob("*.json"))) == 2


# --- degenerate or tampered input -----------------------------------------------------

def test_sample_refuses_a_negative_seed_as_training_does(tmp_path: Path) -> None:
    proc = cli(["resume=x.pt", "seed=-1"], tmp_path, timeout=60, module="flowstudy.sample")
    assert _error_line(proc).startswith("seed=-1 is not allowed: an integer from 0 to 4294967294")


def test_a_sweep_of_no_jobs_exits_non_zero(tmp_path: Path) -> None:
    proc = cli(["-m", "arch=glob(zzz*)", "wandb.mode=disabled"], tmp_path, timeout=60)
    assert _error_line(proc) == ("arch=glob(zzz*): this sweep expands to no jobs (an empty glob "
                                 "or range?); nothing to run")


# --- case 13: online W&B is checked against the host and key W&B itself would use ----------

KEY = "k" * 40  # W&B's format: 40+ word characters


def _online_check(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """flowstudy's pre-flight check of wandb.mode=online, alone in a process (W&B reads its
    settings once per process) with ``home`` as HOME: no network is touched."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("WANDB_") and k not in ("NETRC", "HYDRA_FULL_ERROR")}
    code = ("from flowstudy.config import WandbConfig\nfrom flowstudy.tracking import "
            "check_online\ncheck_online(WandbConfig(mode='online'))\nprint('accepted')\n")
    return subprocess.run([sys.executable, "-c", code], cwd=home,
                          env={**clean, "HOME": str(home), **env}, capture_output=True,
                          text=True, timeout=60)


def test_online_wandb_uses_the_host_and_key_wandb_would(tmp_path: Path) -> None:
    def refusal(proc: subprocess.CompletedProcess[str]) -> str:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        return proc.stderr.strip().splitlines()[-1]

    # no login at all: refused, naming W&B's own default host
    assert refusal(_online_check(tmp_path)).endswith(
        "no W&B API key for https://api.forge.coreweave.com (run `wandb login` or set "
        "WANDB_API_KEY)")
    # `wandb login` to the default host writes its netrc entry: accepted
    (tmp_path / ".netrc").write_text(f"machine api.forge.coreweave.com login user password {KEY}\n")
    assert _online_check(tmp_path).stdout == "accepted\n"
    # `wandb login --host`: the host in W&B's settings file, the key in the netrc for it
    (tmp_path / ".netrc").write_text(f"machine wandb.example.org login user password {KEY}\n")
    (tmp_path / ".config" / "wandb").mkdir(parents=True)
    (tmp_path / ".config" / "wandb" / "settings").write_text(
        "[default]\nbase_url = https://wandb.example.org\n")
    assert _online_check(tmp_path).stdout == "accepted\n"
    # WANDB_BASE_URL wins over the settings file, as in W&B: no key for that host
    assert refusal(_online_check(tmp_path, WANDB_BASE_URL="https://other.example.org")).endswith(
        "no W&B API key for https://other.example.org (run `wandb login` or set WANDB_API_KEY)")
    assert _online_check(tmp_path, WANDB_BASE_URL="https://other.example.org",
                         WANDB_API_KEY=KEY).stdout == "accepted\n"


# --- case 3: a same-shape rewrite with its old mtime put back is still a change ---------------

def test_a_same_shape_rewrite_with_its_old_mtime_is_not_skipped(tmp_path: Path) -> None:
    data = tmp_path / "cd.npy"
    x = _vectors(data)
    assert cli(EMB, tmp_path, timeout=120).returncode == 0
    old = data.stat()
    x[0, 0] += 1.0
    np.save(data, x)  # what cp -p, rsync -a and tar leave: same size, the old mtime
    os.utime(data, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (data.stat().st_size, data.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    new = hashlib.sha256(data.read_bytes()).hexdigest()
    line = _error_line(cli(EMB, tmp_path, timeout=120))  # not "skipping: completed"
    assert line.startswith(f"dataset.path=cd.npy: its content changed since run '{CD}'")
    assert f"-> {new[:12]})" in line
    # A new run on the new content (its own split: another dataset.seed) records its hash.
    proc = cli([*EMB, "dataset.seed=1"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [result] = tmp_path.glob("study/runs/*dataset_seed1*/result.json")
    assert json.loads(result.read_text())["lineage"][0]["data"] == {"sha256": new}


# --- cases 4, 14 and 15: the report reads inside its study; WANDB_MODE=disabled; stale runs ----

def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_report_reads_only_its_own_study_and_shows_a_killed_run_as_stale(
        tmp_path: Path) -> None:
    base = [*TINY, "train.epochs=1", "train.threads=1", "checkpoint.save_last=true"]
    # WANDB_MODE=disabled wins over wandb.mode's default (offline): no W&B files at all
    proc = cli(base, tmp_path, timeout=120, env={"WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.glob("outputs/*/*/train.log")) and not list(tmp_path.rglob("wandb"))
    [best] = tmp_path.glob("study/checkpoints/*/best.pt")
    proc = cli([f"resume={best.relative_to(tmp_path)}", "sample.steps=2"], tmp_path,
               timeout=120, module="flowstudy.sample")
    assert proc.returncode == 0, proc.stderr

    # a copy of the study, its evaluation told apart, and its run left "running" by a dead pid
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "study", copy / "study")
    [record] = copy.glob("study/checkpoints/*/eval/*.json")
    evaluation = json.loads(record.read_text())
    evaluation["metrics"]["w2"] = 9.8765
    record.write_text(json.dumps(evaluation))
    gone = subprocess.Popen(["true"])
    gone.wait()
    [result] = copy.glob("study/runs/*/result.json")
    killed = {**json.loads(result.read_text()), "status": "running", "pid": gone.pid}
    result.write_text(json.dumps(killed))

    # the next run is refused naming the stale record, and leaves nothing behind
    before = _files(copy)
    line = _error_line(cli(base, copy, timeout=120))
    assert f"was running (pid {gone.pid}, not alive) at epoch 1 and left " in line
    assert _files(copy) == before

    # from another directory, the original study keeps its evaluations
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli(["--study", "../study"], elsewhere, timeout=120, module="flowstudy.report")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "study" / "reports" / "default" / "report.md").read_text()
    assert "## Sampling cost vs quality" in report and "9.8765" not in report
    # the copy shows its own evaluation, and its killed run as stale
    proc = cli(["--study", "copy/study"], tmp_path, timeout=120, module="flowstudy.report")
    assert proc.returncode == 0, proc.stderr
    assert "9.8765" in proc.stdout
    assert f"running (pid {gone.pid}, not alive)" in proc.stdout


# --- case 15: a command refused before any work leaves nothing ---------------------------------

def test_a_refused_command_leaves_nothing_behind(tmp_path: Path) -> None:
    for args in (["train.lr=-1"], ["-m", "train.lr=-1,1"]):
        assert _error_line(cli([*args, "wandb.mode=disabled"], tmp_path, timeout=60)).startswith(
            "train.lr=-1.0 is not allowed: a float > 0")
        assert _files(tmp_path) == []
    assert _error_line(cli(["resume=x.pt"], tmp_path, timeout=60, module="flowstudy.sample")) \
        == "resume=x.pt: no such file"
    assert _files(tmp_path) == []
    # data refused once the run has started: not even the hash cache stays
    np.save(tmp_path / "cd.npy", np.zeros((400, 4), np.float32))
    line = _error_line(cli(EMB, tmp_path, timeout=120))
    assert line == ("dataset.path=cd.npy: its 400 rows are all zero (zero variance in every "
                    "dimension); there is no distribution to learn")
    assert _files(tmp_path) == ["cd.npy"]
