"""Flow-matching methods: which path joins source and data, and how their points are paired."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from flowstudy.config import CFMFlowConfig, CoupledFlowConfig, FlowConfig, OTFlowConfig
from flowstudy.flows.couplings import Coupling, EntropicOTCoupling, ExactOTCoupling
from flowstudy.flows.paths import (
    BrownianBridgePath,
    CondOTPath,
    GaussianCFMPath,
    ProbabilityPath,
    VPPath,
)
from flowstudy.flows.times import TimeSampler
from flowstudy.options import build


@dataclass(frozen=True)
class Flow:
    path: ProbabilityPath
    coupling: Coupling | None = None  # None: independent pairs
    prefetch: int = 0  # batches coupled ahead in a background thread
    # how training draws t (validation draws it uniformly)
    times: TimeSampler = field(default_factory=TimeSampler)


# The builders of flowstudy.options' flow rows.


def ot(cfg: OTFlowConfig) -> Flow:
    return Flow(CondOTPath(cfg.sigma_min))


def cfm(cfg: CFMFlowConfig) -> Flow:
    return Flow(GaussianCFMPath(cfg.sigma))


def vp(cfg: FlowConfig) -> Flow:
    return Flow(VPPath())


def minibatch_ot(cfg: CoupledFlowConfig) -> Flow:
    return Flow(GaussianCFMPath(cfg.sigma), ExactOTCoupling(), cfg.prefetch)


def sb(cfg: CoupledFlowConfig) -> Flow:
    return Flow(BrownianBridgePath(cfg.sigma),
                EntropicOTCoupling(2 * cfg.sigma**2, cfg.sinkhorn_iters), cfg.prefetch)


def build_flow(cfg: FlowConfig) -> Flow:
    """The flow of flow config ``cfg``, by its option's row, drawing t as ``cfg`` says."""
    times = TimeSampler(cfg.time_sampling, cfg.logit_loc, cfg.logit_scale, cfg.beta_a, cfg.beta_b)
    return dataclasses.replace(build("flow", cfg), times=times)
