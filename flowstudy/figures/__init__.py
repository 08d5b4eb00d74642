"""The report's figures, drawn only from the files runs leave; each is written as PNG and SVG.

- ``metrics``: every ranked metric of every configuration as its mean with the 95% interval
  over seeds (``flowstudy.stats``), each seed a dot, its floor and Gaussian baseline marked.
- ``val_loss``: each configuration's validation curve (the monitored loss), the mean over its
  seeds with a band of the 95% interval of that mean, on a y-range set by the end of training,
  not by the first epoch.
- ``samples``: the real test data first, then one panel per configuration, on shared axes (2-d
  data; other vectors on the test data's top two principal components; digits as images).
- ``nfe``: sample quality (mean and 95% interval over seeds) against the velocity evaluations
  spent, when the group's runs (or
  evaluations beside their checkpoints, ``eval-*.json``) sample with several budgets.
- ``data_size``: sample quality against ``dataset.n_train``, when the group varies it.

A configuration is a (label, runs) pair: the runs of one config that differ only by seed.
"""


from flowstudy.figures.common import y_range
from flowstudy.figures.compute import (
    data_size_points,
    isoflop,
    nfe_points,
    quality_vs_data_size,
    quality_vs_nfe,
)
from flowstudy.figures.runs import metric_intervals, sample_montage, validation_curves

__all__ = ["data_size_points", "isoflop", "metric_intervals", "nfe_points",
           "quality_vs_data_size", "quality_vs_nfe", "sample_montage", "validation_curves",
           "y_range"]
