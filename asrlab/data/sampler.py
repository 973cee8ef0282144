"""Duration-bucketed batching.

Utterances of similar length share a batch, so little compute is spent on padding. A batch holds
`batch_size` utterances, or as many as fit `batch_seconds` of padded audio. The first epoch can
run short-to-long (a curriculum that gets CTC out of its blank phase sooner); later epochs shuffle
the batch order. With `num_replicas > 1` every rank gets the same number of batches.
"""

from __future__ import annotations

import numpy as np


def make_batches(durations: list[float], batch_size: int | None, batch_seconds: float
                 ) -> list[list[int]]:
    order = np.argsort(np.asarray(durations), kind="stable")
    batches, current, longest = [], [], 0.0
    for i in order.tolist():
        d = durations[i]
        full = (len(current) >= batch_size) if batch_size else \
            (current and max(longest, d) * (len(current) + 1) > batch_seconds)
        if full:
            batches.append(current)
            current, longest = [], 0.0
        current.append(i)
        longest = max(longest, d)
    if current:
        batches.append(current)
    return batches


class BucketBatchSampler:
    def __init__(self, durations: list[float], batch_size: int | None = None,
                 batch_seconds: float = 120.0, shuffle: bool = True, sort_first_epoch: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0):
        self.batches = make_batches(list(durations), batch_size, batch_seconds)
        self.shuffle, self.sort_first_epoch, self.seed = shuffle, sort_first_epoch, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_batches(self) -> list[list[int]]:
        batches = list(self.batches)
        if self.shuffle and not (self.sort_first_epoch and self.epoch == 0):
            rng = np.random.default_rng((self.seed, self.epoch))
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:  # same count on every rank: wrap around to fill
            per_rank = -(-len(batches) // self.num_replicas)
            batches = (batches * 2)[:per_rank * self.num_replicas]
            batches = batches[self.rank::self.num_replicas]
        return batches

    def __iter__(self):
        return iter(self.epoch_batches())

    def __len__(self) -> int:
        n = len(self.batches)
        return -(-n // self.num_replicas) if self.num_replicas > 1 else n
