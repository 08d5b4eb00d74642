"""Placing runs and sweep jobs on devices, devices this machine lacks, the CPU threads each job
uses, TF32."""

from __future__ import annotations

import os

import pytest
import torch

from flowstudy.devices import auto_device, resolve_device, thread_count, usable_cores, use_tf32
from flowstudy.errors import ConfigError


def test_parallel_jobs_each_take_their_own_gpu() -> None:
    assert auto_device(0, job_num=3, parallel=2) == "cpu"
    assert auto_device(1, job_num=3, parallel=2) == "cuda"
    assert [auto_device(4, job_num=j, parallel=2) for j in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert auto_device(4, job_num=3, parallel=1) == "cuda"  # serial sweeps keep the default GPU


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


def test_tf32_switch_sets_cuda_flags_and_never_claims_tf32_on_a_cpu() -> None:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        assert use_tf32(torch.device("cuda"), True) is True
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert use_tf32(torch.device("cuda"), False) is False
        assert not torch.backends.cuda.matmul.allow_tf32
        assert use_tf32(torch.device("cpu"), True) is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_parallel_jobs_share_one_gpu_and_split_the_cores() -> None:
    # hydra/launcher=joblib hydra.launcher.n_jobs=4 on a 16-core machine with one GPU.
    assert [auto_device(1, job, parallel=4) for job in range(4)] == ["cuda"] * 4
    assert [auto_device(2, job, parallel=4) for job in range(4)] == ["cuda:0", "cuda:1"] * 2
    assert thread_count(None, cores=16, sharing=4) == 4
    assert thread_count(None, cores=2, sharing=4) == 1 and thread_count(3, 16, 4) == 3


def test_omp_num_threads_caps_the_cores_a_null_threads_uses(monkeypatch) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4096")
    assert usable_cores() == cores
    for junk in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert usable_cores() == cores
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert usable_cores() == cores
