"""Placing runs, jobs and ranks on devices; the CPU threads each job uses; TF32."""

from __future__ import annotations

from flowstudy.devices import auto_device


def test_parallel_jobs_each_take_their_own_gpu() -> None:
    assert auto_device(0, job_num=3, parallel=2) == "cpu"
    assert auto_device(1, job_num=3, parallel=2) == "cuda"
    assert [auto_device(4, job_num=j, parallel=2) for j in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert auto_device(4, job_num=3, parallel=1) == "cuda"  # serial sweeps keep the default GPU
