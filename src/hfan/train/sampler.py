"""The training data stream: which sample every rank loads at every optimiser step, as a pure function of the step.

All ranks read one global stream of positions 0, 1, 2, ...; position p is item `perm_e[p mod n]` of epoch
`e = p div n`, where `perm_e` is a permutation of the n items seeded with (seed + e), as torch's
DistributedSampler seeds its shuffles. Step s consumes the `samples_per_step = world x batch x accumulate`
positions from s x samples_per_step on: micro-batch m of rank r holds the `batch` positions starting at
s x samples_per_step + (m x world + r) x batch. Hence

* a run resumed at step s reads exactly what the uninterrupted run would have (the data position is the step),
* 1 GPU x 16 x 2 accumulation steps sees, step by step, the same 32 samples as 2 GPUs x 16, and
* an epoch boundary may fall inside a batch (the stream never drops or pads samples).

The stream yields `(index, epoch)` keys; `FlatTrainDataset` seeds each item's augmentation with them, so what a
key gives does not depend on the worker that loads it.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch


class TrainStream(torch.utils.data.Sampler):
    """The keys one rank loads, from optimiser step `start_step` on, without end."""

    def __init__(self, dataset_size: int, batch_per_rank: int, accumulate: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 1208, start_step: int = 0, shuffle: bool = True):
        if dataset_size < 1:
            raise ValueError("the training set is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset_size = dataset_size
        self.batch_per_rank = batch_per_rank
        self.accumulate = accumulate
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_step = start_step
        self.shuffle = shuffle
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation) last used

    @property
    def samples_per_step(self) -> int:
        return self.world_size * self.batch_per_rank * self.accumulate

    def order(self, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[0] != epoch:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                permutation = torch.randperm(self.dataset_size, generator=generator)
            else:
                permutation = torch.arange(self.dataset_size)
            self._order = (epoch, permutation)
        return self._order[1]

    def key(self, position: int) -> tuple[int, int]:
        """(item index, epoch) at a position of the global stream."""
        epoch, offset = divmod(position, self.dataset_size)
        return int(self.order(epoch)[offset]), epoch

    def positions(self, step: int) -> list[int]:
        """This rank's global positions for one optimiser step, micro-batch after micro-batch."""
        first = step * self.samples_per_step
        positions = []
        for micro in range(self.accumulate):
            start = first + (micro * self.world_size + self.rank) * self.batch_per_rank
            positions.extend(range(start, start + self.batch_per_rank))
        return positions

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            for position in self.positions(step):
                yield self.key(position)
            step += 1
