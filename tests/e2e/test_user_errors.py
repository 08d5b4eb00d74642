"""What a new or hostile user reaches second (small data, damaged files, reports,
searches) ends in one line and a non-zero exit, or a documented behaviour; never a traceback.
Each test runs the real CLI in a subprocess, on the smallest run that shows the case."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flowstudy.checkpoint import Checkpoint
from tests.helpers import TINY, cli
from tests.wandb_files import find_run_files, read_run

pytestmark = pytest.mark.slow

QUICK = ["debug=quick", "train.threads=1"]


def _where(tmp_path: Path) -> list[str]:
    return [f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}"]


def _result(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "study").glob("runs/*/result.json")
    return json.loads(path.read_text())


def test_four_samples_complete_with_undefined_metrics_nan(tmp_path):
    """Case 1: sample.n=4 is allowed, so the run completes; the k-NN density/coverage and the
    C2ST need more points and are NaN, said in one warning."""
    done = cli([*QUICK, "sample.n=4", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert ("density, coverage, c2st: NaN, not defined at this n (4 points per set; "
            "density/coverage need 6, c2st need 10)") in done.stdout + done.stderr
    result = _result(tmp_path)
    assert result["status"] == "completed"
    assert math.isnan(result["metrics"]["density"])
    assert result["metrics"]["w2"] >= 0


def test_eight_row_file_completes(tmp_path):
    """Case 1: an 8-row file (auto split 4/2/2) trains and evaluates what 2 points define."""
    torch.save(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), tmp_path / "r8.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'r8.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "precision, recall, density, coverage, c2st: NaN, not defined at this n (2 points" \
        in done.stdout + done.stderr
    assert _result(tmp_path)["status"] == "completed"


def _damaged_checkpoint(path: Path, case: str) -> Path:
    from flowstudy.checkpoint import FORMAT_VERSION, TRAIN_KEYS
    from flowstudy.config import to_dict
    from tests.helpers import compose_config

    config = to_dict(compose_config([]))
    content = {"format_version": FORMAT_VERSION, "rng": {}, **{k: {} for k in TRAIN_KEYS},
               "config": config}
    if case == "format":
        content["format_version"] = "1"
    elif case == "no_arch":
        del config["arch"]
    else:
        content["config"] = "junk"
    torch.save(content, path)
    return path


@pytest.mark.parametrize("module", ["flowstudy.train", "flowstudy.sample"])
@pytest.mark.parametrize(("case", "problem"), [
    ("format", "its format_version is '1', expected an integer"),
    ("no_arch", "its config lacks a valid arch (each a mapping naming one of its options)"),
    ("config_str", "its config is a str, expected the run's config (a mapping)"),
])
def test_a_damaged_checkpoint_is_one_line_in_resume_and_sample(tmp_path, module, case,
                                                               problem):
    """Case 5: the checkpoint's header is read and checked before any work, in both readers."""
    path = _damaged_checkpoint(tmp_path / "best.pt", case)
    args = [f"resume={path}", f"hydra.run.dir={tmp_path / 'out'}"]
    if module == "flowstudy.train":
        args += [*QUICK, f"study_dir={tmp_path / 'study'}"]
    done = cli(args, tmp_path, module=module)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"flowstudy: error: resume={path}: damaged checkpoint, {problem}"]


def test_a_one_column_file_trains_plots_and_reports(tmp_path):
    """Case 2: [N, 1] data draw as a histogram (the run) and a jittered strip (the report)."""
    torch.save(torch.randn(200, 1, generator=torch.Generator().manual_seed(0)),
               tmp_path / "x1.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'x1.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _result(tmp_path)["status"] == "completed"
    shown = cli(["--study", str(tmp_path / "study")], tmp_path, module="flowstudy.report")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert (tmp_path / "study" / "reports" / "default" / "samples.png").exists()


def test_a_tensor_file_saved_with_requires_grad_trains(tmp_path):
    """Case 3: the file's autograd history is dropped on load; training passes epoch 1."""
    torch.save(torch.randn(200, 3, requires_grad=True) * 1.0, tmp_path / "g.pt")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / 'g.pt'}",
                "dataset.n_train=null", *_where(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _result(tmp_path)["status"] == "completed"


def test_refusals_before_work_are_one_line_without_hydras_noise(tmp_path):
    """Cases 6, 12, 15: each refusal is its one line on stderr and exit 2: no HydraException
    traceback for interval() without a search, no "Error executing job with overrides" before a
    line raised in the task, no UserWarning before the hydra.sweep.dir line, -m anywhere on the
    command line, argparse naming the command; a cut-short checkpoint says so."""
    def refused(args: list[str], module: str = "flowstudy.train") -> str:
        done = cli(args, tmp_path, module=module)
        assert done.returncode == 2, done.stderr[-2000:]
        return done.stderr.strip()

    # -m after an override: the same sweep; interval() is refused before any job
    assert refused(["train.lr=interval(0.1,1)", "-m", *QUICK, *_where(tmp_path)]) == (
        "flowstudy: error: train.lr=interval(0.1,1): interval() is a range to search, which "
        "only an Optuna search samples; add hparams_search=lr_optuna (or "
        "hydra/sweeper=optuna), or list the values to run: key=0.1,0.3,1")
    assert refused(["dataset=embeddings", f"hydra.run.dir={tmp_path / 'out'}"]) == (
        "flowstudy: error: dataset.path has no default and must be set: add dataset.path=...")
    (tmp_path / "afile").write_text("")
    assert refused(["-m", *QUICK, f"hydra.sweep.dir={tmp_path / 'afile' / 'x'}"]) == (
        f"flowstudy: error: {tmp_path / 'afile' / 'x'}: Not a directory; hydra.run.dir "
        f"(hydra.sweep.dir with -m) must be a directory that can be created and written")
    assert refused(["--bogus"]).splitlines()[-1] == (
        "python -m flowstudy.train: error: unrecognized arguments: --bogus")
    cut = tmp_path / "cut.pt"
    torch.save({"weights": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:-100])
    assert refused([f"resume={cut}", f"hydra.run.dir={tmp_path / 'out'}"],
                   module="flowstudy.sample") == (
        f"flowstudy: error: resume={cut}: not a readable checkpoint (the file is cut short: "
        f"{cut.stat().st_size} bytes, its zip archive lacks its end, as an interrupted copy or "
        f"a full disk leaves it)")
    assert not (tmp_path / "study").exists()


def test_a_search_whose_trials_all_fail_ends_in_its_summary_and_one_line(tmp_path):
    """Case 6: every trial refused (512 training points, n_train=4096): no "No trials are
    completed yet" traceback, the summary, then how many failed and the first failure."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    done = cli(["-m", "hparams_search=lr_optuna", "hydra.sweeper.n_trials=2", *TINY,
                "dataset.n_train=4096", "wandb.mode=disabled", f"study_dir={tmp_path / 'study'}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "0 of 2 runs completed or skipped as done" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        "flowstudy: all 2 trials of the search failed, so it has no best trial; the first, "
        "job 0: dataset.n_train=4096 is not allowed: at most 512, the size of moons's train "
        "split")


@pytest.mark.parametrize("module", ["hydra", "torch"])
def test_ctrl_c_while_the_command_imports_stops_it_in_one_line(tmp_path, module):
    """Case 9: SIGINT as hydra (before the command line is read) or torch (as the run starts)
    is imported, with SIGINT ignored as a script's background job inherits it: the command
    stops with 130 and one line, and trains nothing."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        class CtrlC:  # the signal arrives while {module} is being imported
            def find_spec(self, name, path, target=None):
                if name == {module!r}:
                    os.kill(os.getpid(), signal.SIGINT)

        sys.meta_path.insert(0, CtrlC())
        sys.argv = ["flowstudy.train", *{[*QUICK, *_where(tmp_path)]!r}]
        from flowstudy.train import main
        main()
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr.strip()) == (
        128 + signal.SIGINT, "flowstudy: stopped by SIGINT while starting")
    assert not (tmp_path / "study").exists()


def test_online_wandb_without_a_network_falls_back_offline_and_long_names_are_shortened(
        tmp_path):
    """Cases 7, 13, 15: W&B online with a key and an unreachable server gives up after
    wandb.init_timeout with one line naming the sync command, and the run is logged offline;
    a HOME that cannot be written adds no lines of W&B's core or matplotlib; a file stem that
    makes the derived name long gives a name of at most 128 bytes, the full one recorded."""
    stem = "v" * 150
    torch.save(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)),
               tmp_path / f"{stem}.pt")
    (tmp_path / "home").write_text("a file, so nothing can be written under HOME")
    done = cli([*QUICK, "dataset=embeddings", f"dataset.path={tmp_path / stem}.pt",
                "dataset.n_train=null", "wandb.mode=online", "wandb.init_timeout=2",
                *_where(tmp_path)], tmp_path,
               env={"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "f" * 40,
                    "HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    (fallback,) = re.findall(r"W&B could not start the run online within "
                             r"wandb.init_timeout=2s \(.*127\.0\.0\.1:9.*\); logging offline "
                             r"instead, upload it later with: wandb sync (\S+)$", out, re.M)
    (run_file,) = find_run_files(tmp_path / "out")
    assert (tmp_path / fallback).resolve() == run_file.parent.resolve()
    assert read_run(run_file).exit_code == 0
    # wandb-core's log lines ("2026/12/01 13:37:41 INFO server: ..."), matplotlib's warnings
    assert not re.search(r"^\d{4}/\d\d/\d\d \S+ (INFO|ERROR) |\[matplotlib\]\[WARNING\]",
                         out, re.M)
    result = _result(tmp_path)
    assert result["status"] == "completed"
    assert len(result["name"].encode()) <= 128 and re.fullmatch(
        r"mlp-ot-v+-[0-9a-f]{10}", result["name"])
    assert result["full_name"] == f"mlp-ot-{stem}-none-epochs2-steps10-warmup_steps4"
    best = Checkpoint.load(tmp_path / "study" / "checkpoints" / result["name"] / "best.pt")
    assert best.full_name == result["full_name"]
