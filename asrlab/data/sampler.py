"""Duration-bucketed batching.

Utterances of similar length share a batch, so little compute is spent on padding. A batch holds
`batch_size` utterances, or as many as fit `batch_seconds` of padded audio. The first epoch can
run short-to-long (a curriculum that gets CTC out of its blank phase sooner); later epochs shuffle
the batch order.

Distributed training (`num_replicas > 1`): batch sizes are global. Every rank builds the same
global batches in the same order and takes its share of each (`batch[rank::num_replicas]`), so
N processes train on exactly the batches one process would, and averaged gradients match.
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
        if self.num_replicas > 1:
            batches = [shard(b, self.rank, self.num_replicas) for b in batches]
        return batches

    def __iter__(self):
        return iter(self.epoch_batches())

    def __len__(self) -> int:
        return len(self.batches)


def shard(batch: list[int], rank: int, num_replicas: int) -> list[int]:
    """This rank's share of a global batch; a batch smaller than the group is repeated so that
    every rank has work (and calls backward, which DDP requires)."""
    if len(batch) < num_replicas:
        batch = (batch * num_replicas)[:num_replicas]
    return batch[rank::num_replicas]
