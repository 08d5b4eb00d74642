"""Test helpers: compose the real config with Hydra, run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowstudy.config import CONF_DIR, compose_config

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


def cli(args: list[str], cwd: Path, timeout: float = 300,
        module: str = "flowstudy.train") -> subprocess.CompletedProcess[str]:
    """``python -m flowstudy.train ARGS`` (or another ``module``) in ``cwd`` with one torch
    thread and no W&B network."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
