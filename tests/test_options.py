"""The option table agrees with conf/: every YAML option has its row, on the schema it composes
onto, and every row builds its object."""

from __future__ import annotations

import pytest
import torch

from flowstudy.config import CONF_DIR, GROUP_SCHEMAS
from flowstudy.options import OPTIONS, build
from flowstudy.resolve import arch_sizes

from .helpers import compose_config


@pytest.mark.parametrize("group", sorted(OPTIONS))
def test_every_yaml_option_has_its_row_on_the_schema_it_composes_onto(group: str) -> None:
    yamls = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    assert yamls == set(OPTIONS[group])
    for name, row in OPTIONS[group].items():
        schema_name = (CONF_DIR / group / f"{name}.yaml").read_text().split(
            "- /", 1)[1].split("@", 1)[0]
        assert GROUP_SCHEMAS[group][schema_name] is row.schema, name


@pytest.mark.parametrize(("group", "name"), [(g, n) for g in sorted(OPTIONS)
                                             for n in sorted(OPTIONS[g]) if n != "embeddings"])
def test_every_row_builds_from_its_composed_config(group: str, name: str) -> None:
    cfg = getattr(compose_config([f"{group}={name}"]), group)
    assert isinstance(cfg, OPTIONS[group][name].schema)
    if group == "arch":
        model = build(group, arch_sizes(cfg, 3), 3)
        assert model(torch.randn(2, 3), torch.rand(2)).shape == (2, 3)
    elif group == "dataset":
        points = build(group, cfg)
        assert points.ndim == 2 and torch.isfinite(points).all()
    elif group == "flow":
        assert build(group, cfg).path is not None
    else:
        made = build(group, cfg)
        assert (made is None) == (name == "none")
