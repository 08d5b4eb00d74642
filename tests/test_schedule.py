"""The learning-rate schedule: warmup then cosine, and a plateau's decay, on the host and on the
device."""

from __future__ import annotations

import itertools

import pytest
import torch

from flowstudy.schedule import WarmupCosine


def test_warmup_then_cosine() -> None:
    s = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    lrs = [s(k) for k in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_device_schedule_matches_the_host_schedule() -> None:
    s = WarmupCosine(lr=2e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.05)
    steps = torch.arange(130)
    assert torch.allclose(s.at(steps), torch.tensor([s(int(k)) for k in steps],
                                                    dtype=torch.float64), rtol=1e-12)


def test_a_plateau_decays_from_the_planned_lr_to_the_minimum_at_its_end() -> None:
    planned = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=1010, min_lr_ratio=0.1)
    s = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=1010, min_lr_ratio=0.1,
                     plateau=(200, 300))
    assert [s(k) for k in range(201)] == [planned(k) for k in range(201)]  # the same up to it
    assert s(250) == pytest.approx(0.1 + (planned(200) - 0.1) * 0.5)  # halfway down its cosine
    assert s(300) == pytest.approx(0.1) and s(1000) == pytest.approx(0.1)  # long before 1010
    lrs = [s(k) for k in range(10, 1011)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert all(s(k) <= planned(k) for k in range(1011))  # never above the plan
    late = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1,
                        plateau=(100, 400))
    assert late(110) == pytest.approx(0.1)  # the plan ends first: the lower of the two


def test_device_schedule_matches_the_host_schedule_with_a_plateau() -> None:
    s = WarmupCosine(lr=2e-3, warmup_steps=10, total_steps=500, min_lr_ratio=0.05,
                     plateau=(40, 90))
    steps = torch.arange(130)
    assert torch.allclose(s.at(steps), torch.tensor([s(int(k)) for k in steps],
                                                    dtype=torch.float64), rtol=1e-12)
