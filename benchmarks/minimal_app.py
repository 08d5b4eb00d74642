"""The start-up reference: a minimal Hydra app (a typed config in the ConfigStore, a task that
does nothing), the least any Hydra command costs. ``python -m benchmarks.minimal_app``"""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore


@dataclass
class MinimalConfig:
    width: int = 256
    batch: int = 256


ConfigStore.instance().store(name="minimal", node=MinimalConfig)


@hydra.main(version_base="1.3", config_path=None, config_name="minimal")
def main(cfg: MinimalConfig) -> None:
    pass


if __name__ == "__main__":
    main()
