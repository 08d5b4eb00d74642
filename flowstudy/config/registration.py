"""Hydra registration (the schemas in the ConfigStore, flowstudy's OmegaConf resolvers) and
composition outside a Hydra app.

Called by each entry point before Hydra composes (``flowstudy.cli.main``, ``flowstudy.sample.main``,
``compose_config``), never as a side effect of an import. Hydra's launchers carry the
ConfigStore and the resolvers to their worker processes (``Singleton.get_state``), so a job
needs no registration of its own. The schemas are stored at the root of the ConfigStore, outside
the groups, so ``arch=<TAB>`` and error messages offer only the options users pick.
"""

from __future__ import annotations

import os

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from flowstudy.config.groups import CONF_DIR, group_options_text
from flowstudy.config.schemas import GROUP_SCHEMAS, Config, EvalConfig
from flowstudy.config.validation import load_config, objective_direction, rules_text


def register_configs() -> None:
    """Idempotent: storing a node again or replacing a resolver changes nothing."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_eval_config", node=EvalConfig)
    # At the root, not in the groups: shell completion lists a group's ConfigStore entries too.
    for schemas in GROUP_SCHEMAS.values():
        for schema_name, schema in schemas.items():
            cs.store(name=schema_name, node=schema)
    # --help lists the options users pick from (the YAML files), not the schemas behind them.
    OmegaConf.register_new_resolver("flowstudy_groups", group_options_text, replace=True)
    OmegaConf.register_new_resolver("flowstudy_rules", rules_text, replace=True)
    # hydra.run.dir / hydra.sweep.dir: the launching process's id, cached like Hydra's ${now:}
    # (and copied with it into each job's config), so a command's directory is its own.
    OmegaConf.register_new_resolver("flowstudy_pid", os.getpid, use_cache=True, replace=True)
    # hparams_search=: hydra.sweeper.direction follows from the objective's metric.
    OmegaConf.register_new_resolver("flowstudy_direction", objective_direction, replace=True)


def compose_config(overrides: list[str]) -> Config:
    """The validated config ``python -m flowstudy.train OVERRIDES`` would run, composed outside
    a Hydra app (tests, benchmarks, notebooks)."""
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return load_config(compose("config", overrides=overrides))
