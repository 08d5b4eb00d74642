"""Test helpers: compose the real config with Hydra, run the real CLI in a subprocess (to its
end, or started in the background to be signalled)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from flowstudy.build import Built, build
from flowstudy.config import CONF_DIR, Config, compose_config
from flowstudy.rng import seed_everything
from flowstudy.schedule import WarmupCosine
from flowstudy.step import StepConfig, attach_lr

CONF = CONF_DIR

# A run small enough for a unit test: 8 steps per epoch, a 2-block width-32 MLP.
TINY_TRAIN = ["train.batch_size=64", "train.warmup_steps=10", "train.epochs=3", "sample.steps=8",
              "train.log_every=4"]
TINY_MLP = ["arch.width=32", "arch.depth=2"]
TINY_MOONS = ["dataset.size=768", "dataset.n_val=128", "dataset.n_test=128"]
TINY = [*TINY_MOONS, *TINY_MLP, *TINY_TRAIN]
# Small settings per option, for tests that sweep an option group.
SMALL_ARCH = {"mlp": TINY_MLP, "dit": ["arch.dim=16", "arch.depth=1"],
              "unet": ["arch.channels=8", "arch.mults=[1,2]"]}
SMALL_DATA = {"digits": ["dataset.n_val=64", "dataset.n_test=64"],
              "sphere": ["dataset.dim=32", *TINY_MOONS], "embeddings": []}


def name_of(overrides: list[str]) -> str:
    """The run name the command line ``overrides`` derive (Hydra's own keys left out)."""
    return compose_config([o for o in overrides if not o.startswith(("hydra.", "-"))]).name


def cli(args: list[str], cwd: Path, timeout: float = 300, module: str = "flowstudy.train",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m flowstudy.train ARGS`` (or another ``module``) in ``cwd`` with one torch
    thread and no W&B network (unless ``env``, added to the environment, gives one)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_SILENT": "true",
           **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], cwd: Path, code: str = "") -> subprocess.Popen[str]:
    """The CLI in a process of its own; ``code`` runs first (e.g. to slow a step down)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    script = textwrap.dedent(code) + "\nimport sys\nfrom flowstudy.cli import main\n" \
        f"sys.argv = ['flowstudy.train', *{args!r}]\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, text: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited before {text!r} appeared: {proc.communicate()}")
        time.sleep(0.02)
    raise TimeoutError(f"{text!r} never appeared in {path}")


def start_train(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``python -m flowstudy.train ARGS`` in a process of its own (HYDRA_FULL_ERROR kept)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    return subprocess.Popen([sys.executable, "-m", "flowstudy.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_text(path: Path, text: str, timeout: float = 120) -> None:
    """Wait until ``text`` is in the file ``path`` (whatever the process is doing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} never appeared in {path}")


def built_with_lr(cfg: Config, device: str = "cpu") -> Built:
    """A seeded build whose optimizer reads its learning rate from the tally (as the steps do)."""
    seed_everything(cfg.seed)
    built = build(cfg, torch.device(device))
    attach_lr(built.state.optimizer, built.state.tally)
    return built


def step_config(cfg: Config, built: Built) -> StepConfig:
    """The step settings a run of ``cfg`` trains with."""
    t = cfg.train
    schedule = WarmupCosine(t.lr, t.warmup_steps, t.epochs * built.batches.steps_per_epoch,
                            t.min_lr_ratio)
    return StepConfig(schedule, t.grad_clip, t.accum_steps, t.nan_patience)


def state_tensors(built: Built) -> list[torch.Tensor]:
    """Every tensor a step may change: weights, EMA, Adam moments, generator state, tally."""
    s = built.state
    moments = [v for state in s.optimizer.state.values() for v in state.values()]
    return [*s.model.parameters(), *s.ema.module.parameters(), *moments, s.ema.count,
            s.noise_gen.get_state(), *(getattr(s.tally, f) for f in
                                       ("steps", "skipped", "window_loss", "grad_norm", "lr"))]


class Sink:
    """A metrics sink that keeps every record ``fit`` logs, with its step."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append({"step": step, **metrics})
