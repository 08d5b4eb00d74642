"""Early stopping: patience counted after warmup, improvements by min_delta."""

from __future__ import annotations

import math

from flowstudy.early_stopping import EarlyStopping


def test_early_stopping_counts_only_after_warmup_and_respects_min_delta() -> None:
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert es.update(1.0, epoch=1)
    assert not es.update(0.95, epoch=2, counting=False)  # not better by min_delta; warmup
    assert es.bad_epochs == 0 and not es.should_stop
    assert not es.update(0.95, epoch=3) and not es.should_stop
    assert es.update(0.85, epoch=4) and es.bad_epochs == 0 and es.best_epoch == 4
    assert not es.update(math.nan, epoch=5)
    assert not es.update(0.9, epoch=6) and es.should_stop
