"""Flow-matching methods: which path joins source and data, and how their points are paired."""

from __future__ import annotations

from dataclasses import dataclass

from flowstudy.config import CFMFlowConfig, CoupledFlowConfig, FlowConfig, OTFlowConfig
from flowstudy.flows.couplings import Coupling, EntropicOTCoupling, ExactOTCoupling
from flowstudy.flows.paths import (
    BrownianBridgePath,
    CondOTPath,
    GaussianCFMPath,
    ProbabilityPath,
    VPPath,
)


@dataclass(frozen=True)
class Flow:
    path: ProbabilityPath
    coupling: Coupling | None = None  # None: independent pairs
    prefetch: int = 0  # batches coupled ahead in a background thread


def build_flow(cfg: FlowConfig) -> Flow:
    if cfg.name == "ot" and isinstance(cfg, OTFlowConfig):
        return Flow(CondOTPath(cfg.sigma_min))
    if cfg.name == "cfm" and isinstance(cfg, CFMFlowConfig):
        return Flow(GaussianCFMPath(cfg.sigma))
    if cfg.name == "vp":
        return Flow(VPPath())
    if cfg.name == "minibatch_ot" and isinstance(cfg, CoupledFlowConfig):
        return Flow(GaussianCFMPath(cfg.sigma), ExactOTCoupling(), cfg.prefetch)
    if cfg.name == "sb" and isinstance(cfg, CoupledFlowConfig):
        return Flow(BrownianBridgePath(cfg.sigma),
                    EntropicOTCoupling(2 * cfg.sigma**2, cfg.sinkhorn_iters), cfg.prefetch)
    raise TypeError(f"no flow for flow={cfg.name} with schema {type(cfg).__name__}")
