"""Whole runs: in-process through ``flowstudy.run.run`` and through the real CLI."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
import wandb

from flowstudy.build import Built, build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.data import build_data
from flowstudy.errors import Diverged, UserError
from flowstudy.evaluate import evaluate
from flowstudy.metrics import SET_METRICS
from flowstudy.models import build_model
from flowstudy.resolve import arch_sizes
from flowstudy.results import RunResult
from flowstudy.rng import rng_state, seed_everything, set_rng_state
from flowstudy.run import run
from flowstudy.schedule import WarmupCosine
from flowstudy.state import TrainState
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, cli, compose_config, name_of
from .wandb_files import find_run_files, read_run


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_run_writes_checkpoint_metrics_result_picture_and_wandb_run(
        tmp_path: Path, study: list[str]) -> None:
    proc = cli([*TINY, *study, "wandb.tags=[smoke]"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    name = name_of(TINY)
    ckpt_dir = tmp_path / "study" / "checkpoints" / name
    run_dir = tmp_path / "study" / "runs" / name

    result = RunResult.load(run_dir / "result.json")
    assert result.status == "completed" and result.stop_reason == "max_epochs"
    assert (result.epochs, result.steps) == (3, 24)  # 512 // 64 = 8 steps per epoch
    assert result.params == sum(p.numel() for p in build_model(
        arch_sizes(compose_config(TINY).arch, 2), 2).parameters())
    assert 0 < result.metrics["w2"] < 5 and result.wall_time_s > 0 and result.nfe == 8
    yardsticks = {f"{k}{f}" for k in SET_METRICS for f in ("", "_floor", "_baseline")}
    assert set(result.metrics) == yardsticks | {"test_nll", "test_nll_baseline"}
    assert result.checkpoint == str(ckpt_dir / "best.pt")
    assert result.config["arch"] == {"name": "mlp", "width": 32, "depth": 2}

    stored = torch.load(ckpt_dir / "best.pt", weights_only=True)  # the file's own layout
    for key in ("model", "ema", "optimizer", "early_stopping", "epoch", "step", "config",
                "normalizer", "rng", "generators", "wandb_run_id"):
        assert key in stored, key
    ckpt = Checkpoint.load(ckpt_dir / "best.pt")
    assert ckpt.epoch == result.best_epoch
    assert ckpt.train["early_stopping"]["best"] == result.best_val_loss
    assert (ckpt_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = _metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if "train/loss" in r]
    val = [r for r in records if "val/ema_loss" in r]
    assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24]
    assert [(r["step"], r["epoch"]) for r in val] == [(8, 1), (16, 2), (24, 3)]
    assert min(r["val/ema_loss"] for r in val) == result.best_val_loss

    files = find_run_files(tmp_path / "out")
    assert len(files) == 1
    wb = read_run(files[0])
    assert (wb.name, wb.group, wb.project) == (name, "default", "flow-matching-study")
    assert wb.run_id == ckpt.wandb_run_id and wb.tags == ["smoke"] and wb.exit_code == 0
    assert {k: wb.config[k] for k in result.config} == result.config
    assert wb.summary["best_val_loss"] == result.best_val_loss
    assert wb.summary["val/ema_loss"] == {"min": result.best_val_loss}
    assert wb.summary["checkpoint"] == result.checkpoint
    assert wb.summary["sample/w2"] == result.metrics["w2"]
    assert wb.summary["samples/_type"] == "image-file"
    assert [h["_step"] for h in wb.history if "train/loss" in h] == [4, 8, 12, 16, 20, 24]


def test_training_lowers_the_loss_and_the_w2_on_moons(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "dataset.size=2560", "dataset.n_val=256", "dataset.n_test=256",
                  "arch.width=64", "train.epochs=12", "train.warmup_steps=50",
                  "sample.steps=20")
    result = run(cfg, tmp_path / "out")
    val = [r["val/ema_loss"] for r in _metrics(tmp_path / "study" / "runs" / cfg.name /
                                                 "metrics.jsonl") if "val/ema_loss" in r]
    assert result.best_val_loss < 0.9 * val[0]

    torch.manual_seed(0)
    untrained = evaluate(build_model(arch_sizes(cfg.arch, 2), 2), build_data(cfg.dataset),
                         cfg.sample, seed=cfg.seed, data_seed=cfg.dataset.seed)
    assert result.metrics["w2"] < 0.5 * untrained.metrics["w2"]


class Sink:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append({"step": step, **metrics})


def _built(cfg: Config) -> Built:
    seed_everything(cfg.seed)
    return build(cfg, torch.device("cpu"))


class KeepEveryLast(Checkpoints):
    """Checkpoints that also keep a copy of each epoch's last.pt, as epoch<N>.pt."""

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        super().save(name, checkpoint)
        if name == "last.pt":
            checkpoint.save(self.dir.parent / f"epoch{checkpoint.epoch}.pt")


def _fit(cfg: Config, built: Built, sink: Sink, ckpt_dir: Path, keep: type = Checkpoints):
    return fit(cfg.train, built.state, built.batches, built.val, sink,
               keep(ckpt_dir, save_last=True))


def _weights(state: TrainState) -> list[torch.Tensor]:
    return [*state.model.parameters(), *state.ema.module.parameters()]


@pytest.mark.parametrize("flow", ["ot", "minibatch_ot", "sb"])
def test_resuming_from_a_checkpoint_replays_the_run_bitwise(tmp_path: Path, flow: str) -> None:
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=5", "train.log_every=3")
    straight, straight_sink = _built(cfg), Sink()
    _fit(cfg, straight, straight_sink, tmp_path / "a", keep=KeepEveryLast)

    # A new state (fresh weights, other RNG draws in between) restored from epoch 2 of 5.
    resumed, sink = _built(cfg), Sink()
    torch.randn(100)
    ckpt = Checkpoint.load(tmp_path / "epoch2.pt")
    resumed.state.load_state_dict(ckpt.train)
    set_rng_state(ckpt.rng)
    assert (resumed.state.epoch, resumed.state.step, resumed.state.ema.updates) == (2, 16, 16)
    _fit(cfg, resumed, sink, tmp_path / "b")

    for a, b in zip(_weights(straight.state), _weights(resumed.state), strict=True):
        assert torch.equal(a, b)
    opt_a = straight.state.optimizer.state_dict()
    opt_b = resumed.state.optimizer.state_dict()
    for k, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][k][name]), name
    assert sink.records == [r for r in straight_sink.records if r["step"] > 16]


@pytest.mark.parametrize("flow", ["minibatch_ot", "sb"])
def test_background_pairing_trains_exactly_like_inline_pairing(tmp_path: Path,
                                                               flow: str) -> None:
    runs = []
    for prefetch in (0, 3):
        cfg = _config(tmp_path, f"flow={flow}", f"flow.prefetch={prefetch}", "train.epochs=2")
        built = _built(cfg)
        _fit(cfg, built, Sink(), tmp_path / str(prefetch))
        runs.append(built.state)
    for a, b in zip(_weights(runs[0]), _weights(runs[1]), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_after_patience_epochs_past_warmup(tmp_path: Path) -> None:
    # A learning rate too small to move the loss by min_delta: no epoch after the first improves.
    common = ("train.lr=1e-7", "train.min_delta=0.05", "train.patience=2", "train.epochs=10")
    no_warmup = run(_config(tmp_path / "a", *common, "train.warmup_steps=0"), tmp_path / "out")
    assert (no_warmup.stop_reason, no_warmup.epochs, no_warmup.best_epoch) == (
        "early_stopping", 3, 1)
    # Warmup ends during epoch 3 (8 steps per epoch): epochs 1 and 2 do not use up patience.
    warm = run(_config(tmp_path / "b", *common, "train.warmup_steps=20"), tmp_path / "out")
    assert (warm.stop_reason, warm.epochs) == ("early_stopping", 4)


def test_cli_resume_with_more_epochs_branches_into_a_new_run_and_w_and_b_fork(
        tmp_path: Path, study: list[str]) -> None:
    first = cli([*TINY, *study, "train.log_every=8"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    name = name_of(TINY)
    best = tmp_path / "study" / "checkpoints" / name / "best.pt"
    stored, stored_bytes = Checkpoint.load(best), best.read_bytes()
    first_result = (tmp_path / "study" / "runs" / name / "result.json").read_text()
    first_run = read_run(find_run_files(tmp_path / "out")[0])

    # Relative resume path: resolved against the directory the command starts in.
    again = cli([*TINY, *study, "train.log_every=8", "train.epochs=5",
                 f"hydra.run.dir={tmp_path / 'out2'}",
                 f"resume=study/checkpoints/{name}/best.pt"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    branch = f"{name}+epochs5"
    result = RunResult.load(tmp_path / "study" / "runs" / branch / "result.json")
    assert (result.status, result.epochs, result.steps) == ("completed", 5, 40)
    # The 3-epoch run is untouched: its checkpoint and result stay as they were.
    assert best.read_bytes() == stored_bytes
    assert (tmp_path / "study" / "runs" / name / "result.json").read_text() == first_result
    parent = result.lineage[-1]["parent"]
    assert [s["parent"] for s in result.lineage[:1]] == [None] and len(result.lineage) == 2
    assert parent == {"name": name, "checkpoint": f"study/checkpoints/{name}/best.pt",
                      "sha256": hashlib.sha256(stored_bytes).hexdigest(), "epoch": 3,
                      "step": 24, "wandb_run_id": first_run.run_id}
    assert result.lineage[1]["config"]["train"]["epochs"] == 5
    assert result.lineage[0]["config"]["train"]["epochs"] == 3

    records = _metrics(tmp_path / "study" / "runs" / branch / "metrics.jsonl")
    val_epochs = [r["epoch"] for r in records if "val/ema_loss" in r]
    assert val_epochs == list(range(1, 6))  # the parent's history up to the branch, then its own
    after = [r for r in records if "train/lr" in r and r["step"] > stored.step]
    schedule = WarmupCosine(1e-3 * 2, 10, 5 * 8, 0.05)  # TINY: lr 2e-3, warmup 10, 8 steps/ep
    assert after[0]["train/lr"] == pytest.approx(schedule(after[0]["step"] - 1))

    forked = read_run(find_run_files(tmp_path / "out2")[0])
    assert forked.run_id != first_run.run_id and forked.name == branch
    assert forked.config["_wandb"]["branch_point"] == {"run_id": first_run.run_id, "step": 24}
    assert min(h["_step"] for h in forked.history) > 24
    assert f"branched off {name}" in forked.notes
    assert len(forked.config["lineage"]) == 2
    final = Checkpoint.load(tmp_path / "study" / "checkpoints" / branch / "best.pt")
    assert final.train["ema"]["updates"] == final.step and final.step > stored.step
    assert final.lineage == result.lineage


def test_a_second_run_of_the_same_name_is_refused_unless_forced(tmp_path: Path) -> None:
    run(_config(tmp_path, "train.epochs=1", "name=r"), tmp_path / "out")
    best = tmp_path / "study" / "checkpoints" / "r" / "best.pt"
    before = best.read_bytes()
    same = run(_config(tmp_path, "train.epochs=1", "name=r"), tmp_path / "out")  # done: skipped
    assert same.skipped and same.status == "completed" and best.read_bytes() == before
    different = r"was trained with a different config \(seed=0 \(now: 3\)\)"
    with pytest.raises(UserError, match=different):
        run(_config(tmp_path, "train.epochs=1", "seed=3", "name=r"), tmp_path / "out")
    assert best.read_bytes() == before
    assert run(_config(tmp_path, "train.epochs=1", "seed=3", "name=r", "force=true"),
               tmp_path / "out").status == "completed"


@pytest.mark.parametrize(
    ("resume", "expected"),
    [
        ("missing.pt", "resume=missing.pt: no such file"),
        (".", "resume=.: is a directory"),
        ("junk.pt", "resume=junk.pt: not a readable checkpoint"),
    ],
)
def test_cli_broken_resume_path_is_one_clear_error(tmp_path: Path, study: list[str],
                                                   resume: str, expected: str) -> None:
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    proc = cli([*TINY, *study, f"resume={resume}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"flowstudy: error: {expected}"] or \
        proc.stderr.strip().startswith(f"flowstudy: error: {expected}")
    assert not (tmp_path / "study" / "runs").exists()


def test_resume_with_another_arch_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.epochs=1")
    run(cfg, tmp_path / "out")
    best = tmp_path / "study" / "checkpoints" / cfg.name / "best.pt"
    with pytest.raises(UserError, match=r"arch\.width=32 \(now: 16\)"):
        run(_config(tmp_path, "arch.width=16", f"resume={best}"), tmp_path / "out")


def test_a_run_failing_after_training_stays_trained_and_its_wandb_run_failed(
        tmp_path: Path) -> None:
    # Tolerances no step size can meet: dopri5 fails at sampling time, after training.
    cfg = _config(tmp_path, "sample.solver=dopri5", "sample.atol=1e-300", "sample.rtol=1e-300",
                  "wandb.mode=offline")
    with pytest.raises(AssertionError, match="underflow in dt"):
        run(cfg, tmp_path / "out")
    wandb.teardown()  # flush the offline run file
    result = RunResult.load(tmp_path / "study" / "runs" / cfg.name / "result.json")
    # training itself finished and was recorded: a rerun only evaluates
    assert result.status == "trained" and "underflow in dt" in result.error
    assert result.epochs == 3
    wb = read_run(find_run_files(tmp_path / "out")[0])
    assert "failed" in wb.tags and "underflow in dt" in wb.notes
    assert wb.exit_code == 1


def test_a_diverging_run_skips_bad_steps_then_stops_with_the_state_before(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.lr=1e30", "train.warmup_steps=0", "train.nan_patience=3",
                  "wandb.mode=offline")
    with pytest.raises(Diverged, match="3 steps in a row had a non-finite gradient norm"):
        run(cfg, tmp_path / "out")
    wandb.teardown()
    result = RunResult.load(tmp_path / "study" / "runs" / cfg.name / "result.json")
    assert result.status == "diverged"
    anomaly = Checkpoint.load(tmp_path / "study" / "checkpoints" / cfg.name / "anomaly.pt")
    assert anomaly.train["nonfinite"] == {"streak": 3, "skipped": 3}
    assert anomaly.step == result.steps and anomaly.train["batch"] == result.steps + 3
    # The skipped steps changed nothing: the EMA saw exactly the applied steps.
    assert anomaly.train["ema"]["updates"] == anomaly.step
    assert all(torch.isfinite(v).all() for v in anomaly.train["model"].values())
    assert "diverged" in read_run(find_run_files(tmp_path / "out")[0]).tags


def test_checkpoint_state_dict_round_trip(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    built = _built(cfg)
    _fit(cfg, built, Sink(), tmp_path / "c")
    state = built.state
    clone = _built(cfg).state
    clone.load_state_dict(copy.deepcopy(state.state_dict()))
    assert (clone.epoch, clone.step, clone.ema.updates) == (state.epoch, state.step,
                                                            state.ema.updates)
    assert clone.shuffle_gen.get_state().equal(state.shuffle_gen.get_state())
    assert set(rng_state()) == {"python", "numpy", "torch", "cuda"}
