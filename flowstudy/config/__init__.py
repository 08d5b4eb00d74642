"""Typed configuration, one module per concept, all imported from here:

``rules``         what a field allows (the rule language and the shared rules)
``schemas``       the dataclasses Hydra validates every YAML against, each field with its rule
``groups``        the config groups and their options in ``conf/``
``validation``    each field's rule and the rules between fields; ``--help``'s rule texts
``naming``        a run's derived name and identity
``registration``  the ConfigStore and resolvers, registered by the entry points (not on import)
``reference``     docs/configuration.md, generated from the schemas and the options

Nothing here imports torch or wandb: composing, validating, naming, ``--help`` and completion
stay quick (tests/test_startup.py).
"""

from flowstudy.config.groups import CONF_DIR, group_options, option_defaults
from flowstudy.config.naming import (
    NON_IDENTITY_KEYS,
    UNNAMED_KEYS,
    dataset_label,
    derive_name,
    differences,
    format_value,
    full_name,
    identity,
    leaves,
    name_suffix,
    named_changes,
    overrides,
    short_name,
)
from flowstudy.config.registration import compose_config, register_configs
from flowstudy.config.rules import (
    MAX_EVAL_DIM,
    MAX_EVAL_POINTS,
    MIN_EVAL_POINTS,
    SOLVERS,
    SOURCES_2D,
    TIME_SAMPLINGS,
    Rule,
    checked,
    floats,
    ints,
    one_of,
)
from flowstudy.config.schemas import (
    GROUP_SCHEMAS,
    SECTIONS,
    ArchConfig,
    AugConfig,
    CFMFlowConfig,
    CheckpointConfig,
    Config,
    CoupledFlowConfig,
    DatasetConfig,
    DigitsConfig,
    DiTConfig,
    EmbeddingsConfig,
    EvalConfig,
    FlowConfig,
    MixupAugConfig,
    MLPConfig,
    NoiseAugConfig,
    OTFlowConfig,
    SampleConfig,
    SphereConfig,
    Toy2DConfig,
    TrainConfig,
    UNetConfig,
    WandbConfig,
    to_dict,
)
from flowstudy.config.validation import (
    check_keys,
    load_config,
    objective_direction,
    rules_text,
    validate,
    validate_eval,
)

__all__ = [
    "CONF_DIR", "GROUP_SCHEMAS", "MAX_EVAL_DIM", "MAX_EVAL_POINTS", "MIN_EVAL_POINTS",
    "NON_IDENTITY_KEYS", "SECTIONS", "SOLVERS", "SOURCES_2D", "TIME_SAMPLINGS",
    "UNNAMED_KEYS",
    "ArchConfig", "AugConfig", "CFMFlowConfig", "CheckpointConfig", "Config", "CoupledFlowConfig",
    "DatasetConfig", "DiTConfig", "DigitsConfig", "EmbeddingsConfig", "EvalConfig", "FlowConfig",
    "MLPConfig", "MixupAugConfig", "NoiseAugConfig", "OTFlowConfig", "Rule", "SampleConfig",
    "SphereConfig", "Toy2DConfig", "TrainConfig", "UNetConfig", "WandbConfig", "check_keys",
    "checked",
    "compose_config", "dataset_label", "derive_name", "differences", "floats", "format_value",
    "full_name", "group_options", "identity", "ints", "leaves", "load_config", "name_suffix",
    "named_changes",
    "objective_direction", "one_of", "option_defaults", "overrides", "register_configs",
    "rules_text", "short_name", "to_dict", "validate", "validate_eval",
]
