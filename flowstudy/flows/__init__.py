"""Flow-matching methods: how source and data are paired and which path joins them."""

from __future__ import annotations

from flowstudy.config import FlowConfig, OTFlowConfig
from flowstudy.flows.paths import CondOTPath


def build_flow(cfg: FlowConfig) -> CondOTPath:
    if isinstance(cfg, OTFlowConfig):
        return CondOTPath(sigma_min=cfg.sigma_min)
    raise TypeError(f"no flow for flow config {type(cfg).__name__}")
