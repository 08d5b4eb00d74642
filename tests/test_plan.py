"""Every rule of what a run does with what an earlier run of its name left (docs/provenance-and-
resume.md), as a case of the pure ``plan_run``: no file is read and no process started."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from flowstudy.errors import UserError
from flowstudy.lineage import Start
from flowstudy.plan import Branch, Continue, Disk, EvaluateOnly, Fresh, Request, Skip, plan_run
from flowstudy.results import RunResult

CKPT = Path("study/checkpoints/r")


def _segment(lr: float = 2e-3, sha: str = "a" * 64, parent: dict | None = None) -> dict:
    return {"config": {"train": {"lr": lr}}, "data": {"sha256": sha}, "parent": parent}


LINEAGE = [_segment()]
PARENT = {"name": "p", "checkpoint": "p/best.pt", "sha256": "b" * 64, "epoch": 3, "step": 24,
          "wandb_run_id": None}
BRANCHED = [_segment(), _segment(parent=PARENT)]


def _result(status: str, lineage: list[dict[str, Any]] = LINEAGE) -> RunResult:
    return RunResult(name="r", group="g", groups=["g"], status=status, epochs=7,
                     stop_reason="early_stopping", lineage=lineage,
                     config={"train": {"lr": 2e-3}})


def _disk(result: RunResult | None = None, best: bool = False, last: bool = False,
          last_lineage: list[dict[str, Any]] | None = None) -> Disk:
    return Disk(Path("study/runs/r"), CKPT, result, best, last, last_lineage)


def _request(resume: str | None = None, force: bool = False, branch: bool = False,
             lineage: list[dict[str, Any]] = LINEAGE) -> Request:
    return Request("r", lineage, resume, force, branch, dataset_path="x.npy")


# --- a fresh run, and what it refuses to replace ------------------------------------------------


def test_nothing_on_disk_trains_fresh() -> None:
    assert plan_run(_request(), _disk()) == Fresh(Start("r", LINEAGE))


def test_a_completed_run_with_this_lineage_is_skipped() -> None:
    prior = _result("completed")
    assert plan_run(_request(), _disk(prior, best=True)) == Skip(prior)


@pytest.mark.parametrize("status", ["completed", "trained", "failed", "interrupted"])
def test_force_trains_fresh_over_anything(status: str) -> None:
    plan = plan_run(_request(force=True), _disk(_result(status), best=True, last=True))
    assert plan == Fresh(Start("r", LINEAGE))


def test_force_with_resume_auto_ignores_last_and_trains_fresh() -> None:
    plan = plan_run(_request("auto", force=True), _disk(_result("interrupted"), last=True,
                                                       last_lineage=LINEAGE))
    assert isinstance(plan, Fresh)


def test_a_trained_run_is_only_evaluated() -> None:
    prior = _result("trained")
    assert plan_run(_request(), _disk(prior, best=True)) == EvaluateOnly(prior, CKPT / "best.pt")


def test_a_trained_run_without_best_trains_again() -> None:
    assert isinstance(plan_run(_request(), _disk(_result("trained"))), Fresh)


def test_another_config_under_the_same_name_is_refused() -> None:
    with pytest.raises(UserError, match=r"run 'r' in study/runs/r was trained with a different "
                                        r"config \(train\.lr=0\.002 \(now: 0\.1\)\): replace it "
                                        r"with force=true"):
        plan_run(_request(lineage=[_segment(lr=0.1)]), _disk(_result("completed")))


def test_changed_data_under_the_same_name_is_refused_naming_both_hashes() -> None:
    with pytest.raises(UserError, match=r"dataset\.path=x\.npy: its content changed since run "
                                        r"'r' .* \(sha256 aaaaaaaaaaaa -> cccccccccccc\)"):
        plan_run(_request(lineage=[_segment(sha="c" * 64)]), _disk(_result("completed")))


def test_a_checkpoint_without_a_result_is_refused_unless_continued() -> None:
    with pytest.raises(UserError, match=r"has a checkpoint \(study/checkpoints/r/best\.pt\) but "
                                        r"no result"):
        plan_run(_request(), _disk(best=True))
    assert isinstance(plan_run(_request("best.pt"), _disk(best=True)), Continue)


def test_an_unfinished_run_left_last_pt_and_a_fresh_start_is_refused() -> None:
    with pytest.raises(UserError, match=r"is interrupted at epoch 7 and left "
                                        r"study/checkpoints/r/last\.pt: continue it with "
                                        r"resume=auto, or start it over with force=true"):
        plan_run(_request(), _disk(_result("interrupted"), last=True))


def test_a_killed_run_left_running_is_named_stale_in_the_refusal() -> None:
    killed = dataclasses.replace(_result("running"), pid=4242)
    with pytest.raises(UserError) as info:
        plan_run(_request(), dataclasses.replace(_disk(killed, last=True), stale=True))
    assert str(info.value) == ("run 'r' in study/runs/r was running (pid 4242, not alive) at "
                               "epoch 7 and left study/checkpoints/r/last.pt: continue it with "
                               "resume=auto, or start it over with force=true")


def test_a_killed_run_that_never_trained_claims_nothing() -> None:
    killed = RunResult(name="r", group="g", status="running", pid=4242,
                       lineage=[_segment(sha="c" * 64)], config={"train": {"lr": 1.0}})
    plan = plan_run(_request(), dataclasses.replace(_disk(killed), stale=True))
    assert plan == Fresh(Start("r", LINEAGE), "run 'r' in study/runs/r was running (pid 4242, "
                                              "not alive) before training started; training it "
                                              "afresh")


def test_an_unfinished_run_without_last_pt_is_retrained() -> None:
    assert isinstance(plan_run(_request(), _disk(_result("failed"))), Fresh)


# --- resume=auto ---------------------------------------------------------------------------------


def test_resume_auto_continues_an_unfinished_run_from_last_pt() -> None:
    plan = plan_run(_request("auto"), _disk(_result("interrupted"), last=True,
                                            last_lineage=LINEAGE))
    assert plan == Continue(CKPT / "last.pt", Start("r", LINEAGE), _result("interrupted"))


def test_resume_auto_without_last_pt_trains_fresh_and_says_so() -> None:
    plan = plan_run(_request("auto"), _disk())
    assert isinstance(plan, Fresh) and "left no unfinished run" in plan.note


def test_resume_auto_skips_a_completed_run() -> None:
    prior = _result("completed")
    assert plan_run(_request("auto"), _disk(prior, best=True, last=True,
                                            last_lineage=LINEAGE)) == Skip(prior)


def test_resume_auto_evaluates_a_trained_run_instead_of_continuing_it() -> None:
    prior = _result("trained")
    plan = plan_run(_request("auto"), _disk(prior, best=True, last=True, last_lineage=LINEAGE))
    assert plan == EvaluateOnly(prior, CKPT / "best.pt")


def test_resume_auto_refuses_a_last_pt_of_another_lineage() -> None:
    with pytest.raises(UserError, match=r"resume=auto: study/checkpoints/r/last\.pt belongs to "
                                        r"another run \(train\.lr=0\.1 \(now: 0\.002\)\)"):
        plan_run(_request("auto"), _disk(last=True, last_lineage=[_segment(lr=0.1)]))


def test_resume_auto_continues_the_lineage_last_pt_records() -> None:
    plan = plan_run(_request("auto", lineage=BRANCHED),
                    _disk(last=True, last_lineage=BRANCHED))
    assert isinstance(plan, Continue) and plan.start.lineage == BRANCHED


# --- resume=PATH: continue or branch -------------------------------------------------------------


def test_resume_of_the_own_lineage_continues_it() -> None:
    plan = plan_run(_request("study/checkpoints/r/last.pt"),
                    _disk(_result("interrupted"), last=True))
    assert plan == Continue(Path("study/checkpoints/r/last.pt"), Start("r", LINEAGE),
                            _result("interrupted"))


def test_resuming_a_completed_run_unchanged_is_refused() -> None:
    with pytest.raises(UserError, match=r"already completed with this config \(early_stopping "
                                        r"after 7 epochs\): resuming it unchanged would replay"):
        plan_run(_request("study/checkpoints/r/best.pt"), _disk(_result("completed"), best=True))


def test_resume_with_other_settings_branches() -> None:
    plan = plan_run(_request("p/best.pt", branch=True, lineage=BRANCHED), _disk())
    assert plan == Branch(Path("p/best.pt"), Start("r", BRANCHED, branch=True))


def test_a_branch_that_completed_earlier_is_skipped() -> None:
    prior = _result("completed", BRANCHED)
    assert plan_run(_request("p/best.pt", branch=True, lineage=BRANCHED),
                    _disk(prior, best=True)) == Skip(prior)


def test_a_branch_off_another_checkpoint_under_the_same_name_is_refused() -> None:
    other = [_segment(), _segment(parent={**PARENT, "step": 40})]
    with pytest.raises(UserError, match=r"was trained with a different config \(lineage="
                                        r"branched off p at step 40 .* \(now: branched off p at "
                                        r"step 24"):
        plan_run(_request("p/best.pt", branch=True, lineage=BRANCHED),
                 _disk(_result("completed", other)))


def test_a_result_from_before_lineages_compares_by_its_config() -> None:
    legacy = RunResult(name="r", group="g", status="completed", lineage=[],
                       config={"train": {"lr": 2e-3}})
    lineage = [{"config": {"train": {"lr": 2e-3}}, "data": {"sha256": "a" * 64},
                "parent": None}]
    assert plan_run(_request(lineage=lineage), _disk(legacy)) == Skip(legacy)


# --- A run that never trained claims nothing ---------------------------------


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_run_stopped_before_its_first_step_neither_claims_its_data_nor_its_name(
        status: str) -> None:
    never = RunResult(name="r", group="g", status=status, lineage=[_segment(sha="c" * 64)],
                      config={"train": {"lr": 1.0}})  # other data, other config: no matter
    plan = plan_run(_request(), _disk(never))
    assert plan == Fresh(Start("r", LINEAGE), "run 'r' in study/runs/r was "
                                              f"{status} before training started; training it "
                                              "afresh")


def test_a_failed_run_that_took_steps_still_claims_its_data() -> None:
    failed = RunResult(name="r", group="g", status="failed", steps=3,
                       lineage=[_segment(sha="c" * 64)], config={"train": {"lr": 2e-3}})
    with pytest.raises(UserError, match="its content changed since run 'r'"):
        plan_run(_request(), _disk(failed))
