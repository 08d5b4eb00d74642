"""What a run cost: FLOPs (counted, and the 6 N D estimate), throughput, peak memory."""

from __future__ import annotations

import resource

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from flowstudy.flows.paths import ProbabilityPath
from flowstudy.results import RunResult
from flowstudy.state import FitResult


def step_flops(model: nn.Module, path: ProbabilityPath, batch_size: int, dim: int,
               device: torch.device) -> float:
    """FLOPs of one training step's forward and backward over the global batch, counted on a
    zero batch of the same shape (counting a real step would perturb it); after training so
    start-up does not pay for it, or at build where a budget needs it (train.budget)."""
    x = torch.zeros(batch_size, dim, device=device)
    t = torch.zeros(batch_size, device=device)
    with FlopCounterMode(display=False) as counter:
        xt, target = path.sample(x, x, t, x)
        F.mse_loss(model(xt, t), target).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def record_cost(result: RunResult, fitted: FitResult, batch_size: int, model: nn.Module,
                path: ProbabilityPath, dim: int, flops_per_step: float | None = None) -> None:
    """What the run cost, into ``result``; ``flops_per_step`` where build counted it already
    (a budget's plan), else counted now."""
    device = next(model.parameters()).device
    samples = fitted.steps * batch_size
    result.flops_per_step = (flops_per_step if flops_per_step is not None
                             else step_flops(model, path, batch_size, dim, device))
    result.flops = result.flops_per_step * fitted.steps
    result.flops_6nd = 6.0 * (result.params or 0) * samples
    if fitted.seconds > 0:
        result.steps_per_s = round(fitted.steps_done / fitted.seconds, 3)
        result.samples_per_s = round(result.steps_per_s * batch_size, 1)
    result.peak_memory_bytes = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
