"""What a user tries second, on ``flowstudy.sample``, ``flowstudy.report``, ``flowstudy.load`` and
an Optuna search: bad keys and values, files that are not checkpoints, odd paths, empty or
failed studies, a search set to the wrong direction. Each is one line and a non-zero exit (or a
documented behaviour), never a traceback.

The refusals of one command run in one process (``_outcomes``): each case is the command's real
``main()`` with its own argv, as ``python -m`` would call it, so a case costs its work and not a
fresh interpreter's imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import flowstudy
from flowstudy.checkpoint import Checkpoint, RunHeader
from flowstudy.config import to_dict
from flowstudy.errors import ConfigError, UserError
from flowstudy.results import RunResult

from ..helpers import TINY, built_with_lr, compose_config

pytestmark = pytest.mark.e2e

# Runs each argv of argv[2] (JSON) through the module argv[1]'s main(), as its own command would,
# and prints [exit status, stderr] per case as JSON on the last line.
RUNNER = textwrap.dedent("""
    import contextlib, importlib, io, json, os, sys, traceback
    from hydra.core.global_hydra import GlobalHydra

    module, cases, out = importlib.import_module(sys.argv[1]), json.loads(sys.argv[2]), []
    for argv in cases:
        os.environ.pop("HYDRA_FULL_ERROR", None)  # run_cli sets it for its own process
        GlobalHydra.instance().clear()
        sys.argv = [sys.argv[0], *argv]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                module.main()
                code = 0
            except SystemExit as e:  # as the interpreter ends a process that raised it
                code = e.code if isinstance(e.code, int) else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        out.append([code, err.getvalue()])
    print(json.dumps(out))
""")


def _outcomes(module: str, cases: dict[str, list[str]], cwd: Path) -> dict[str, tuple[int, str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-c", RUNNER, module, json.dumps(list(cases.values()))],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {case: (code, err) for case, (code, err) in zip(cases, results, strict=True)}


def _one_line(outcome: tuple[int, str], code: int) -> str:
    """The outcome's one line of stderr, once it is checked to be one line and ``code``."""
    got, err = outcome
    assert "Traceback" not in err, err
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("second")


@pytest.fixture(scope="module")
def files(root: Path) -> dict[str, Path]:
    """A run's checkpoint (its weights as built: what is refused needs no training) and two
    failed seeds' records in ``study``, and files a user mistakes for a checkpoint."""
    cfg = compose_config([*TINY, f"study_dir={root / 'study'}", "wandb.mode=disabled"])
    built = built_with_lr(cfg)
    best = root / "study" / "checkpoints" / cfg.name / "best.pt"
    best.parent.mkdir(parents=True)
    Checkpoint.capture(built.state, RunHeader(to_dict(cfg), [], built.resolved.as_dict(),
                                              built.data.normalizer.state_dict()), None).save(best)
    for seed in (1, 0):  # as a run that failed leaves its record
        run = compose_config([*TINY, f"seed={seed}", "wandb.mode=disabled"])
        result = root / "study" / "runs" / run.name / "result.json"
        RunResult(name=run.name, group="default", groups=["default"], status="failed",
                  error="RuntimeError: boom", config=to_dict(run)).save(result)
    odd = root / "odd"
    odd.mkdir()
    (odd / "empty.pt").write_bytes(b"")
    torch.save(torch.randn(3, 2), odd / "tensor.pt")
    return {"best": best, "result": result,
            "empty": odd / "empty.pt", "tensor": odd / "tensor.pt", "dir": odd}


# -- flowstudy.sample -------------------------------------------------------------------------

SAMPLE = {  # case -> (argv, the line's start: {best}, {result}... are the files above)
    "no_resume": ([], "flowstudy: error: resume has no default and must be set: add resume=..."),
    "resume_a_directory": (["resume={dir}"], "flowstudy: error: resume={dir}: is a directory; "
                           "give the checkpoint file inside it, e.g. resume={dir}/best.pt"),
    "resume_an_empty_file": (["resume={empty}"],
                             "flowstudy: error: resume={empty}: not a readable checkpoint ("),
    "resume_a_result_json": (["resume={result}"],
                             "flowstudy: error: resume={result}: not a readable checkpoint ("),
    "resume_a_plain_tensor": (["resume={tensor}"],
                              "flowstudy: error: resume={tensor}: not a flowstudy checkpoint"),
    "n_below_4": (["resume={best}", "sample.n=3"], "flowstudy: error: sample.n=3 is not allowed: "
                  "an integer from 4 to 10000 (W2 is an exact n x n assignment), or null for the "
                  "test split's size"),
    "unknown_sample_key": (["resume={best}", "sample.bogus=1"], "flowstudy: error: sample.bogus "
                           "is not a known key; allowed here: n, steps, solver, atol, rtol, "),
    "a_training_key": (["resume={best}", "train.lr=0.1"], "flowstudy: error: train is not a known "
                       "key; allowed here: resume, seed, sample, save_samples"),
    "seed_not_a_number": (["resume={best}", "seed=abc"], "flowstudy: error: seed: Value 'abc' of "
                          "type 'str' could not be converted to Integer"),
    "atol_zero": (["resume={best}", "sample.solver=dopri5", "sample.atol=0"],
                  "flowstudy: error: sample.atol=0.0 is not allowed: a float > 0"),
    "likelihood_n_zero": (["resume={best}", "sample.likelihood_n=0"], "flowstudy: error: "
                          "sample.likelihood_n=0 is not allowed: an integer >= 1"),
}


@pytest.fixture(scope="module")
def sample_outcomes(root: Path, files: dict[str, Path]) -> dict[str, tuple[int, str]]:
    cases = {case: [a.format(**files) for a in argv] + [f"hydra.run.dir={root / 'out' / case}"]
             for case, (argv, _) in SAMPLE.items()}
    return _outcomes("flowstudy.sample", cases, root)


@pytest.mark.parametrize("case", SAMPLE)
def test_sample_refuses_in_one_line(case: str, sample_outcomes: dict[str, tuple[int, str]],
                                    files: dict[str, Path]) -> None:
    code, err = sample_outcomes[case]
    assert "Traceback" not in err and code == 2, err
    # Hydra's "Error executing job" line before some errors is another change's (issue 21 15a)
    assert err.strip().splitlines()[-1].startswith(SAMPLE[case][1].format(**files)), err


# -- flowstudy.report -------------------------------------------------------------------------

REPORT = {  # case -> (argv, exit status, the one line)
    "no_such_study": (["--study", "{root}/nope"], 1,
                      "flowstudy.report: no runs under {root}/nope/runs"),
    "study_is_a_file": (["--study", "{root}/afile"], 1, "flowstudy.report: --study {root}/afile "
                        "is not a directory: give the study directory (the one holding runs/)"),
    "empty_study": (["--study", "{root}/empty"], 1,
                    "flowstudy.report: no runs under {root}/empty/runs"),
    "no_such_group": (["--study", "{root}/study", "--group", "nosuch"], 1, "flowstudy.report: no "
                      "runs in group 'nosuch' under {root}/study/runs; its groups: default"),
    "unknown_metric": (["--study", "{root}/study", "--metric", "bogus"], 2, "python -m "
                       "flowstudy.report: error: argument --metric: invalid choice: 'bogus' "
                       "(choose from 'best_val_loss', 'w2', "),
    "unknown_flag": (["--grup", "x"], 2,
                     "python -m flowstudy.report: error: unrecognized arguments: --grup x"),
    "unknown_interval": (["--study", "{root}/study", "--interval", "wide"], 2, "python -m "
                         "flowstudy.report: error: argument --interval: invalid choice: 'wide' "
                         "(choose from 't', 'percentile', 'bca')"),
}


@pytest.fixture(scope="module")
def report_outcomes(root: Path, files: dict[str, Path]) -> dict[str, tuple[int, str]]:
    (root / "afile").write_text("")
    (root / "empty" / "runs" / "a-run-that-left-nothing").mkdir(parents=True)
    cases = {case: [a.format(root=root) for a in argv] for case, (argv, *_) in REPORT.items()}
    cases["only_failed_runs"] = ["--study", str(root / "study")]
    return _outcomes("flowstudy.report", cases, root)


@pytest.mark.parametrize("case", REPORT)
def test_report_refuses_in_one_line(case: str, report_outcomes: dict[str, tuple[int, str]],
                                    root: Path) -> None:
    _, code, line = REPORT[case]
    assert _one_line(report_outcomes[case], code).startswith(line.format(root=root))


def test_a_report_of_only_failed_runs_tables_them_and_compares_nothing(
        report_outcomes: dict[str, tuple[int, str]], root: Path) -> None:
    code, err = report_outcomes["only_failed_runs"]
    assert code == 0 and "Traceback" not in err, err
    text = (root / "study/reports/default/report.md").read_text()
    assert "2 runs, 1 configurations" in text
    assert "| 2 | failed |" in text  # one row, both seeds, their status
    assert "no comparison by best val loss: 0 configuration(s) with a value" in text


# -- flowstudy.load ---------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "message"), [
    ("tensor", "resume={tensor}: not a flowstudy checkpoint"),
    ("result", "resume={result}: not a readable checkpoint ("),
    ("dir", "resume={dir}: is a directory"),
])
def test_load_of_a_non_checkpoint_is_one_line(files: dict[str, Path], case: str,
                                              message: str) -> None:
    with pytest.raises(UserError) as info:
        flowstudy.load(files[case])
    assert str(info.value).startswith(message.format(**files)) and "\n" not in str(info.value)


@pytest.mark.parametrize(("device", "message"), [
    ("tpu", "device='tpu' is not allowed: auto, cpu, cuda or cuda:N"),
    pytest.param("cuda", "device='cuda' is not allowed: cpu or auto (this machine has no CUDA "
                 "device)", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU")),
])
def test_load_on_a_device_this_machine_lacks_blames_the_device_not_the_file(
        files: dict[str, Path], device: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        flowstudy.load(files["best"], device=device)
    assert str(info.value) == message


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": -1}, "n=-1 is not allowed: an integer >= 1"),
    ({"n": 2.5}, "n=2.5 is not allowed: an integer >= 1"),
    ({"n": 10, "steps": 0}, "steps=0 is not allowed: an integer >= 1"),  # was: the run's steps
    ({"n": 10, "solver": "heun"}, "solver='heun' is not allowed: one of euler, midpoint, rk4, "
                                  "dopri5"),
    ({"n": 10, "seed": 2**70}, f"seed={2**70} is not allowed: an integer from 0 to 4294967294 "
                               f"(numpy's seed range)"),
])
def test_out_of_range_sample_arguments_are_one_line(files: dict[str, Path], kwargs: dict,
                                                    message: str) -> None:
    run = flowstudy.load(files["best"])
    with pytest.raises(ConfigError) as info:
        run.sample(**kwargs)
    assert str(info.value) == message
    assert run.sample(np.int64(3), steps=1).shape == (3, 2)  # and the run still samples


# -- an Optuna search -------------------------------------------------------------------------

SEARCH = {  # case -> (overrides, the one line)
    "direction_up": (["hydra.sweeper.direction=up"], "flowstudy: error: hydra.sweeper.direction="
                     "'up' is not allowed: minimize or maximize, one direction (a run returns one "
                     "objective); leave it out: the search takes best_val_loss's (minimize)"),
    "direction_against_the_objective": (
        ["objective=recall", "hydra.sweeper.direction=minimize"],
        "flowstudy: error: hydra.sweeper.direction='minimize' is not allowed: maximize for "
        "objective=recall (it would search for the worst runs); leave it out: the search takes "
        "the objective's direction"),
    "two_directions": (["hydra.sweeper.direction=[minimize,maximize]"], "flowstudy: error: "
                       "hydra.sweeper.direction=['minimize', 'maximize'] is not allowed: minimize "
                       "or maximize, one direction"),
    "no_trials": (["hydra.sweeper.n_trials=0"],
                  "flowstudy: error: hydra.sweeper.n_trials=0 is not allowed: an integer >= 1"),
    "no_trials_at_once": (["hydra.sweeper.n_jobs=0"],
                          "flowstudy: error: hydra.sweeper.n_jobs=0 is not allowed: an integer "
                          ">= 1"),
    "an_unknown_objective": (["objective=loss"], "flowstudy: error: objective='loss' is not "
                             "allowed: one of best_val_loss, w2, "),
}
# A search's trials validate themselves, so a bad training value goes to a run of its own.
STALL = (["wandb.stall_minutes=0"], "flowstudy: error: wandb.stall_minutes=0.0 is not allowed: a "
         "float > 0, or null for no stall alert")


def test_an_optuna_search_set_wrong_and_a_stall_alert_of_no_time_are_refused_before_work(
        tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cases = {case: ["-m", "hparams_search=lr_optuna", *TINY, "wandb.mode=disabled",
                    f"study_dir={tmp_path / 'study'}", f"hydra.sweep.dir={tmp_path / case}",
                    *overrides] for case, (overrides, _) in SEARCH.items()}
    cases["stall"] = [*TINY, f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path}/run",
                      *STALL[0]]
    outcomes = _outcomes("flowstudy.train", cases, tmp_path)
    for case, (_, line) in [*SEARCH.items(), ("stall", STALL)]:
        assert _one_line(outcomes[case], 2).startswith(line), case
    assert not (tmp_path / "study").exists()  # no trial ran
