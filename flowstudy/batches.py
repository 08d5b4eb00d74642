"""Training batches: each epoch's (x0, x1, t, eps), drawn in a fixed order from the run's
generators and paired by the flow's coupling, optionally ahead of the step in a background thread.

The draws happen in one sequence whatever the timing, and a coupling's own randomness comes from
a generator seeded by (seed, epoch, batch), so a prefetched run is identical to an inline one and
a run resumed mid-epoch can replay the draws it skips.

An epoch is ``passes`` shuffled passes over the train split (more than one where a pass alone
would be shorter than ``train.min_epoch_steps``; see flowstudy.resolve), drawn in one sequence, so
the same replay covers a resume in any pass.

With ``overfit_batches`` N > 0 (``debug=overfit``) every epoch cycles through the same N batches,
drawn once from generators of their own (so resuming redraws them identically).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from flowstudy.data import Source
from flowstudy.data.augment import Augment
from flowstudy.errors import ConfigError
from flowstudy.flows import Flow

T = TypeVar("T")


@dataclass
class Batch:
    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor | None

    def part(self, index: int, parts: int) -> Batch:
        """The ``index``-th of ``parts`` equal contiguous slices (a rank's shard, a micro-batch)."""
        if parts == 1:
            return self
        size = self.x1.shape[0] // parts
        cut = slice(index * size, (index + 1) * size)
        return Batch(self.x0[cut], self.x1[cut], self.t[cut],
                     None if self.eps is None else self.eps[cut])


@dataclass
class BatchSource:
    train: torch.Tensor  # normalised, on the training device
    batch_size: int
    source: Source
    flow: Flow
    augment: Augment | None
    seed: int
    passes: int = 1  # passes over the train split per epoch
    overfit_batches: int = 0  # > 0: train on these first batches only, the same every time
    _fixed: list[Batch] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.overfit_batches > self.steps_per_pass:
            raise ConfigError("train.overfit_batches", self.overfit_batches,
                              f"at most the {self.steps_per_pass} batches of a pass")

    @property
    def steps_per_pass(self) -> int:
        return self.train.shape[0] // self.batch_size  # the last partial batch is dropped

    @property
    def steps_per_epoch(self) -> int:
        return self.passes * self.steps_per_pass

    def _draws(self, shuffle_gen: torch.Generator, noise_gen: torch.Generator,
               skip: int) -> Iterator[tuple[int, Batch]]:
        n, b, device = self.train.shape[0], self.batch_size, self.train.device
        for i in range(self.steps_per_epoch):
            j = i % self.steps_per_pass  # batch index within its pass
            if j == 0:
                order = torch.randperm(n, generator=shuffle_gen).to(device)
            x1 = self.train[order[j * b:(j + 1) * b]]
            if self.augment is not None:
                x1 = self.augment(x1, noise_gen)
            x0 = self.source.sample(b, x1.shape[1], noise_gen)
            t = self.flow.times.sample(b, noise_gen)
            eps = (torch.randn(x1.shape, generator=noise_gen, device=device)
                   if self.flow.path.noisy else None)
            if i >= skip:  # skipped batches still draw, so the generators end where they would
                yield i, Batch(x0, x1, t, eps)

    def _paired(self, items: Iterator[tuple[int, Batch]], epoch: int) -> Iterator[Batch]:
        for i, batch in items:
            g = torch.Generator(batch.x0.device).manual_seed(hash((self.seed, epoch, i)))
            batch.x0, batch.x1 = self.flow.coupling(batch.x0, batch.x1, g)
            yield batch

    def fixed_batches(self) -> list[Batch]:
        """The ``overfit_batches`` batches every step of an overfitting run takes, paired."""
        if self._fixed is None:
            shuffle = torch.Generator().manual_seed(self.seed)
            noise = torch.Generator(self.train.device).manual_seed(self.seed + 1)
            draws = itertools.islice(self._draws(shuffle, noise, 0), self.overfit_batches)
            self._fixed = (list(self._paired(draws, 0)) if self.flow.coupling is not None
                           else [batch for _, batch in draws])
        return self._fixed

    def fixed_validation(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x1, x0, t, eps) of the fixed batches: an overfitting run is scored on what it fits."""
        fixed = self.fixed_batches()
        eps = [torch.zeros_like(b.x1) if b.eps is None else b.eps for b in fixed]
        return (torch.cat([b.x1 for b in fixed]), torch.cat([b.x0 for b in fixed]),
                torch.cat([b.t for b in fixed]), torch.cat(eps))

    def epoch(self, epoch: int, shuffle_gen: torch.Generator, noise_gen: torch.Generator,
              skip: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` after the first ``skip``."""
        if self.overfit_batches:  # an epoch's usual number of steps, on the fixed batches
            fixed = self.fixed_batches()
            return (fixed[i % len(fixed)] for i in range(skip, self.steps_per_epoch))
        draws = self._draws(shuffle_gen, noise_gen, skip)
        if self.flow.coupling is None:
            return (batch for _, batch in draws)
        paired = self._paired(draws, epoch)
        return prefetch(paired, self.flow.prefetch) if self.flow.prefetch > 0 else paired


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead of the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_Failed(e))

    worker = threading.Thread(target=produce, name="flowstudy-prefetch", daemon=True)
    worker.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
