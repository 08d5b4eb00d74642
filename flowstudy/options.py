"""One table from a config group option to its schema and the function that builds its object.

``python -m flowstudy.train arch=dit`` picks the option ``dit`` of the group ``arch``: Hydra
composes ``conf/arch/dit.yaml`` onto its schema, validation checks the composed node is that
schema, and ``build("arch", cfg, dim)`` makes the model. Builders are named as ``module:function``
and imported only when called, so validation and ``--help`` read this table without torch.
Adding an option is a YAML file in ``conf/<group>/``, a row here and its builder
(``tests/test_options.py`` checks the YAMLs and the rows agree).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from flowstudy.config import (
    AugConfig,
    CFMFlowConfig,
    CoupledFlowConfig,
    DigitsConfig,
    DiTConfig,
    EmbeddingsConfig,
    FlowConfig,
    MixupAugConfig,
    MLPConfig,
    NoiseAugConfig,
    OTFlowConfig,
    SphereConfig,
    Toy2DConfig,
    UNetConfig,
)


@dataclass(frozen=True)
class Option:
    schema: type  # the dataclass its YAML composes onto
    builder: str  # "module:function": (config node, *args) -> the object


_TOY2D = Option(Toy2DConfig, "flowstudy.data:toy2d_points")

OPTIONS: dict[str, dict[str, Option]] = {
    # arch: (config, data dim) -> velocity model
    "arch": {
        "mlp": Option(MLPConfig, "flowstudy.models:mlp"),
        "dit": Option(DiTConfig, "flowstudy.models:dit"),
        "unet": Option(UNetConfig, "flowstudy.models:unet"),
    },
    # flow: (config) -> Flow (probability path and coupling)
    "flow": {
        "ot": Option(OTFlowConfig, "flowstudy.flows:ot"),
        "cfm": Option(CFMFlowConfig, "flowstudy.flows:cfm"),
        "vp": Option(FlowConfig, "flowstudy.flows:vp"),
        "minibatch_ot": Option(CoupledFlowConfig, "flowstudy.flows:minibatch_ot"),
        "sb": Option(CoupledFlowConfig, "flowstudy.flows:sb"),
    },
    # dataset: (config) -> the pool of points its splits are drawn from
    "dataset": {
        **dict.fromkeys(("8gaussians", "checkerboard", "circles", "moons", "scurve",
                         "swissroll"), _TOY2D),
        "sphere": Option(SphereConfig, "flowstudy.data:sphere_points"),
        "digits": Option(DigitsConfig, "flowstudy.data:digits_points"),
        "embeddings": Option(EmbeddingsConfig, "flowstudy.data:file_points"),
    },
    # aug: (config) -> Augment, or None for batches as they are
    "aug": {
        "none": Option(AugConfig, "flowstudy.data.augment:no_augment"),
        "noise": Option(NoiseAugConfig, "flowstudy.data.augment:noise"),
        "mixup": Option(MixupAugConfig, "flowstudy.data.augment:mixup_of"),
    },
}


def option(group: str, name: str) -> Option:
    return OPTIONS[group][name]


def build(group: str, cfg: Any, *args: Any) -> Any:
    """The object of ``cfg``, the composed node of ``group`` (its ``name`` is the option)."""
    module, function = option(group, cfg.name).builder.split(":")
    return getattr(importlib.import_module(module), function)(cfg, *args)
