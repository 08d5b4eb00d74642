"""Placing runs, jobs and ranks on devices; the CPU threads each job uses; TF32."""

from __future__ import annotations

import pytest
import torch

from flowstudy.devices import auto_device, resolve_device
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
