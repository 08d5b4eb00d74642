"""Ranks under torchrun: more ranks than GPUs is one line naming the counts."""

from __future__ import annotations

import pytest

from flowstudy.distributed import check_ranks_fit
from flowstudy.errors import UserError


def test_more_ranks_than_gpus_is_one_line_naming_the_counts() -> None:
    check_ranks_fit(1, 1)
    with pytest.raises(UserError) as err:
        check_ranks_fit(2, 1)
    assert str(err.value) == ("torchrun started 2 ranks but this machine has 1 CUDA device(s); "
                              "use --nproc_per_node<=1 or train.device=cpu for gloo")
